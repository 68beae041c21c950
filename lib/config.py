"""Settings from the environment, a `.env` file and `.streamlit/secrets.toml`, in that order."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from dotenv import dotenv_values

from lib.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite:///data/hub.db"
CONFIG_ROOT = PROJECT_ROOT  # where .env and .streamlit/secrets.toml are read (tests point it elsewhere)

SECRET_NAMES = {
    "CVR_API_TOKEN",
    "ECONOMIC_APP_SECRET_TOKEN",
    "ECONOMIC_AGREEMENT_GRANT_TOKEN",
    "VTIGER_ACCESS_KEY",
    "SIMPLYCRM_ACCESS_KEY",
}
# The one masking rule: a setting whose name contains one of these is a secret (config, module config, logs).
SECRET_MARKERS = ("PASSWD", "PASSWORD", "CREDENTIAL", "DSN", "TOKEN", "SECRET", "KEY")
MASK = "••••••"


def is_secret_name(name: str) -> bool:
    """Is a setting called `name` a secret (never shown, never logged)?"""
    upper = name.upper()
    return upper in SECRET_NAMES or any(marker in upper for marker in SECRET_MARKERS)


def _truthy(value: str | bool | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _flatten_secrets(data: dict) -> dict[str, str]:
    """Top-level scalar keys of secrets.toml become settings; tables (like [auth]) are left alone."""
    return {k.upper(): str(v) for k, v in data.items() if not isinstance(v, dict)}


@lru_cache(maxsize=8)
def _file_layers(root: str) -> tuple[dict[str, str], dict[str, str]]:
    root_path = Path(root)
    env_file = {k: v for k, v in dotenv_values(root_path / ".env").items() if v is not None} if (
        root_path / ".env"
    ).is_file() else {}
    secrets_path = root_path / ".streamlit" / "secrets.toml"
    secrets: dict[str, str] = {}
    if secrets_path.is_file():
        try:
            secrets = _flatten_secrets(tomllib.loads(secrets_path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{secrets_path}: not valid TOML ({exc})") from exc
    return env_file, secrets


def raw_setting(name: str, default: str | None = None) -> str | None:
    """One setting by name: environment, then `.env`, then `.streamlit/secrets.toml`."""
    if name in os.environ:
        return os.environ[name]
    env_file, secrets = _file_layers(str(CONFIG_ROOT))
    if name in env_file:
        return env_file[name]
    if name in secrets:
        return secrets[name]
    return default


def raw_settings_with_prefix(prefix: str) -> dict[str, str]:
    """Every setting whose name starts with `prefix`, with the same precedence as `raw_setting`."""
    env_file, secrets = _file_layers(str(CONFIG_ROOT))
    merged: dict[str, str] = {}
    for layer in (secrets, env_file, os.environ):
        merged.update({k: v for k, v in layer.items() if k.startswith(prefix)})
    return merged


def parse_json_value(value: str):
    """`false` → False, `3` → 3, `"x"` → "x"; text that is not JSON stays text."""
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    modules_enabled: bool = True
    modules_dir: str = "modules"
    modules_auto_reload: bool = True
    cvr_api_url: str = "https://cvrapi.dk/api"
    cvr_api_token: str | None = None
    cvr_user_agent: str | None = None
    cvr_cache_days: int = 30
    economic_api_url: str = "https://restapi.e-conomic.com"
    economic_app_secret_token: str | None = None
    economic_agreement_grant_token: str | None = None
    vtiger_url: str | None = None
    vtiger_username: str | None = None
    vtiger_access_key: str | None = None
    vtiger_cvr_field: str | None = None
    simplycrm_url: str | None = None
    simplycrm_username: str | None = None
    simplycrm_access_key: str | None = None
    simplycrm_cvr_field: str | None = None
    crm_write_back: bool = False
    import_max_file_mb: int = 50
    import_max_rows: int = 1_048_576
    import_max_columns: int = 100
    import_max_sheets: int = 10
    import_read_memory_mb: int = 2048
    import_read_seconds: int = 120
    import_stream_from_rows: int = 200_000
    http_timeout_seconds: float = 20.0
    http_wait_budget_seconds: float = 1800.0
    log_level: str = "INFO"
    log_format: str = "keyvalue"
    hub_cli_user: str = "cli"
    hub_cli_role: str = "admin"
    hub_admins: str = ""
    hub_operators: str = ""
    hub_viewers: str = ""
    default_role: str = "viewer"
    require_login: bool = False
    auth_trust_email_providers: str = ""
    session_max_age_hours: float = 12.0
    run_stale_seconds: int = 900
    run_heartbeat_seconds: float = 5.0
    jobs_dir: str = "data/jobs"
    plan_ttl_minutes: int = 60
    job_worker_nice: int = 10

    def masked(self) -> dict[str, str | None]:
        """All settings for display, with secrets replaced by a mask."""
        out: dict[str, str | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if is_secret_name(f.name) and value:
                out[f.name.upper()] = MASK
            else:
                out[f.name.upper()] = None if value is None else str(value)
        return out

    def __repr__(self) -> str:  # secrets never end up in a log line by accident
        return f"Settings({self.masked()})"


def _coerce(raw: str, kind: type | str, name: str):
    kind_name = kind if isinstance(kind, str) else kind.__name__
    if "bool" in kind_name:
        return _truthy(raw, False)
    if "int" in kind_name:
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if "float" in kind_name:
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    return raw


def get_settings() -> Settings:
    """Read the settings now (cheap: the files are cached, the environment is read each call)."""
    values = {}
    for f in fields(Settings):
        raw = raw_setting(f.name.upper())
        if raw is None or raw == "":
            continue
        values[f.name] = _coerce(raw, f.type, f.name.upper())
    return Settings(**values)


def reload_files() -> None:
    """Forget cached `.env` / secrets.toml contents (tests and long-running processes)."""
    _file_layers.cache_clear()
