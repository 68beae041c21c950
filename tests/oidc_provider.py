"""A real OpenID provider (npm `oidc-provider`, tests/oidc/) and the Hub configured to sign in against it.

`npm ci --prefix tests/oidc` installs the provider (CI runs it; the fixture runs it itself when it is missing,
so the README's `pip install -r requirements.txt && pytest` is enough). Without Node/npm the tests skip, and
in CI (CI=true) they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest

from tests.browser import free_port, wait_for_health
from tests.conftest import IN_CI, ROOT

OIDC_DIR = ROOT / "tests" / "oidc"
CLIENT_ID, CLIENT_SECRET = "hub", "hub-test-client-secret"
PROVIDER = "company"  # [auth.company]: the button reads "Sign in with Company"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def ensure_provider_installed() -> None:
    """node_modules/oidc-provider from the committed package-lock.json (npm ci), once."""
    if not shutil.which("node") or not shutil.which("npm"):
        _unavailable("Node.js and npm are needed for the real OpenID provider (apt-get install nodejs npm)")
    if (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    done = subprocess.run(["npm", "ci", "--prefix", str(OIDC_DIR), "--no-audit", "--no-fund"],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        _unavailable(f"npm ci --prefix tests/oidc failed: {done.stderr.strip()[-500:]}")


def _wait_for_json(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the OpenID provider exited with {proc.returncode}")
        with suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=2) as response:
                json.loads(response.read())
                return
        time.sleep(0.2)
    raise TimeoutError(f"the OpenID provider did not answer at {url}")


class SignInSetup:
    """One provider and one Hub server that signs in against it. `start(env)` returns the Hub's base URL."""

    def __init__(self, tmp: Path, accounts: dict[str, dict]):
        self.tmp, self.accounts = tmp, accounts
        self.procs: list[subprocess.Popen] = []
        self.hub_port, self.idp_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.hub_port}"
        self.issuer = f"http://127.0.0.1:{self.idp_port}"

    def _spawn(self, args: list[str], env: dict, cwd: Path, log_name: str) -> subprocess.Popen:
        log = open(self.tmp / log_name, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start(self, hub_env: dict[str, str]) -> str:
        redirect_uri = f"{self.base}/oauth2callback"
        idp = self._spawn(["node", str(OIDC_DIR / "server.mjs")], {
            "PATH": os.environ.get("PATH", ""), "PORT": str(self.idp_port), "REDIRECT_URI": redirect_uri,
            "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "ACCOUNTS": json.dumps(self.accounts),
        }, OIDC_DIR, "oidc-provider.log")
        _wait_for_json(f"{self.issuer}/.well-known/openid-configuration", idp)
        secrets = self.tmp / "secrets.toml"
        secrets.write_text(
            f'[auth]\nredirect_uri = "{redirect_uri}"\ncookie_secret = "test-cookie-secret-0123456789abcdef"\n'
            f'[auth.{PROVIDER}]\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{self.issuer}/.well-known/openid-configuration"\n'
            # Streamlit asks for prompt=select_account, which oidc-provider does not offer; login is its equivalent.
            f'client_kwargs = {{ prompt = "login" }}\n', encoding="utf-8")
        self.hub_env = hub_env
        self.hub = self._start_hub()
        return self.base

    def _start_hub(self) -> subprocess.Popen:
        env = {**os.environ, **self.hub_env, "PYTHONPATH": str(ROOT)}
        proc = self._spawn([sys.executable, "-m", "streamlit", "run", str(ROOT / "Home.py"), "--server.headless",
                            "true", "--server.port", str(self.hub_port), "--server.address", "127.0.0.1",
                            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                            "--secrets.files", str(self.tmp / "secrets.toml")], env, ROOT,
                           f"streamlit-{len(self.procs)}.log")
        wait_for_health(self.base)
        return proc

    def replace_hub(self) -> None:
        """Another Hub process at the same address (as the next replica behind a load balancer would be):
        whatever it knows about sessions comes from the database. Streamlit ties the identity cookie to the
        redirect_uri's origin, so replicas share one address."""
        self.hub.terminate()
        self.hub.wait(timeout=20)
        self.hub = self._start_hub()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))
