"""Can sign-in actually start? The modules `st.login` needs import, and each provider's metadata URL answers.

`manage.py doctor` runs `check_signin`; the sign-in screen uses `missing_signin_module` to say what is wrong
instead of an "Internal Server Error" after the click.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from typing import Any

import requests

from lib import config
from lib.config import Settings
from lib.errors import ConfigError
from lib.roles import NO_ROLE, check_default_role

# What Streamlit's OIDC routes import when someone clicks "Sign in" (the `streamlit[auth]` extra).
SIGNIN_MODULES = ("authlib.integrations.starlette_client", "httpx")
METADATA_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
MAX_METADATA_BYTES = 1_000_000
PROVIDER_KEYS = {"client_id", "client_secret", "server_metadata_url"}


def missing_signin_module() -> str | None:
    """Why sign-in cannot start for lack of a Python package, or None."""
    for name in SIGNIN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return (f"sign-in cannot start: {name} does not import ({exc}). Install the requirements "
                    "(pip install -r requirements.txt: st.login needs the streamlit[auth] extra, Authlib and httpx)")
    return None


def read_auth_section() -> dict[str, Any]:
    """The [auth] table of .streamlit/secrets.toml in the config root; {} without one."""
    path = config.CONFIG_ROOT / ".streamlit" / "secrets.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    auth = data.get("auth")
    return auth if isinstance(auth, dict) else {}


def metadata_urls(auth: dict[str, Any]) -> dict[str, str]:
    """Provider name → server_metadata_url ("default" for a provider configured directly in [auth])."""
    named = {k: v for k, v in auth.items() if isinstance(v, dict) and PROVIDER_KEYS & set(v)}
    if not named:
        return {"default": str(auth.get("server_metadata_url") or "")}
    return {name: str(section.get("server_metadata_url") or auth.get("server_metadata_url") or "")
            for name, section in named.items()}


def fetch_metadata(url: str, timeout: float) -> dict[str, Any]:
    """The provider's OpenID configuration; ConfigError naming what is wrong when it does not answer with one."""
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"server_metadata_url {url!r} is not an http(s) URL")
    try:
        with requests.get(url, timeout=timeout, stream=True, headers={"Accept": "application/json"}) as response:
            body = response.raw.read(MAX_METADATA_BYTES + 1, decode_content=True)
            status = response.status_code
    except requests.RequestException as exc:
        raise ConfigError(f"{url} does not answer: {type(exc).__name__}") from exc
    if status != 200:
        raise ConfigError(f"{url} answered HTTP {status}, not the provider's OpenID configuration")
    if len(body) > MAX_METADATA_BYTES:
        raise ConfigError(f"{url} answered more than {MAX_METADATA_BYTES} bytes: not an OpenID configuration")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ConfigError(f"{url} did not answer with JSON") from exc
    missing = [key for key in METADATA_KEYS if not isinstance(data, dict) or not data.get(key)]
    if missing:
        raise ConfigError(f"{url} answered JSON without {', '.join(missing)}: not an OpenID configuration")
    return data


def check_signin(settings: Settings) -> list:
    """doctor's sign-in lines: the modules import, each provider's metadata answers, the role defaults are sane."""
    from lib.doctor import FAIL, OK, WARN, Check  # here, not at the top: lib.doctor imports this module

    checks = []
    try:
        default_role = check_default_role(settings.default_role)
    except ConfigError as exc:
        return [Check("signin", FAIL, str(exc))]
    if settings.session_max_age_hours <= 0:
        return [Check("signin", FAIL, "SESSION_MAX_AGE_HOURS must be above 0")]
    auth = read_auth_section()
    if not auth:
        return checks
    problem = missing_signin_module()
    checks.append(Check("signin", FAIL, problem) if problem else
                  Check("signin", OK, f"sign-in modules import ({', '.join(SIGNIN_MODULES)})"))
    for provider, url in metadata_urls(auth).items():
        name = f"signin:{provider}"
        if not url:
            checks.append(Check(name, FAIL, "no server_metadata_url"))
            continue
        try:
            issuer = fetch_metadata(url, settings.http_timeout_seconds)["issuer"]
        except ConfigError as exc:
            checks.append(Check(name, FAIL, str(exc)))
            continue
        checks.append(Check(name, OK, f"provider metadata answers (issuer {issuer})"))
    if default_role != NO_ROLE:
        checks.append(Check("default_role", WARN, f"DEFAULT_ROLE={default_role}: anyone who can sign in at the "
                                                  "provider and is named by no list gets that role; production "
                                                  "recommendation: DEFAULT_ROLE=none (docs/SECURITY.md)"))
    else:
        checks.append(Check("default_role", OK, "DEFAULT_ROLE=none: only people the role lists name get in"))
    return checks
