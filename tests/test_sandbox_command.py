"""`manage.py sandbox`: all four simulators on consecutive ports, export lines that work."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lib.commands import sandbox as sandbox_command
from lib.config import Settings
from lib.integrations import test_connection

ROOT = Path(__file__).resolve().parent.parent


def _free_base() -> int:
    for base in range(21000, 60000, 97):
        sockets = []
        try:
            for offset in range(4):
                s = socket.socket()
                s.bind(("127.0.0.1", base + offset))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no four free consecutive ports")


def _exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)='([^']*)'$", text, re.MULTILINE))


def test_sandbox_in_process_ports_and_settings(capsys):
    base = _free_base()
    stop = threading.Event()
    worker = threading.Thread(target=sandbox_command.run, args=(argparse.Namespace(port_base=base), stop))
    worker.start()
    try:
        out = ""
        for _ in range(100):
            out += capsys.readouterr().out
            if "Ctrl-C" in out:
                break
            time.sleep(0.05)
        env = _exports(out)
        assert env["CVR_API_URL"] == f"http://127.0.0.1:{base}/api"
        assert env["ECONOMIC_API_URL"] == f"http://127.0.0.1:{base + 1}"
        assert env["VTIGER_URL"] == f"http://127.0.0.1:{base + 2}"
        assert env["SIMPLYCRM_URL"] == f"http://127.0.0.1:{base + 3}"
        settings = Settings(**{k.lower(): v for k, v in env.items()})
        for service in ("cvr", "economic", "vtiger", "simplycrm"):
            ok, message = test_connection(service, settings)
            assert ok, message
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()


def test_sandbox_command_line_runs_until_ctrl_c():
    base = _free_base()
    proc = subprocess.Popen([sys.executable, "manage.py", "sandbox", "--port-base", str(base)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        while not any(line.startswith("export SIMPLYCRM_ACCESS_KEY") for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        env = _exports("".join(lines))
        assert len(env) == 11 and env["CVR_USER_AGENT"].count(" - ") == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_env_file_appears_whole_once_every_simulator_answers_and_wait_returns(tmp_path):
    """`sandbox --env-file F &` then `sandbox --wait F`: the README's try-it steps, with no sleep."""
    env_file = tmp_path / "sandbox.env"
    base = _free_base()
    proc = subprocess.Popen([sys.executable, "manage.py", "sandbox", "--port-base", str(base), "--env-file",
                             str(env_file)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        waited = subprocess.run([sys.executable, "manage.py", "sandbox", "--wait", str(env_file), "--timeout", "60"],
                                cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert waited.returncode == 0, waited.stderr
        exports = _exports(env_file.read_text())
        assert exports["CVR_API_URL"].startswith(f"http://127.0.0.1:{base}")
        for name in sandbox_command.URL_SETTINGS:
            assert sandbox_command.answers(exports[name]), name
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert not env_file.exists(), "a stopped sandbox leaves no file with dead addresses"


def test_wait_gives_up_with_exit_2_when_no_sandbox_writes_the_file(tmp_path):
    waited = subprocess.run([sys.executable, "manage.py", "sandbox", "--wait", str(tmp_path / "none.env"),
                             "--timeout", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert waited.returncode == 2
    assert "was not written" in waited.stderr and len(waited.stderr.strip().splitlines()) == 1


def test_sandbox_can_answer_like_vtiger_cloud(capsys):
    """`--vtiger-per-minute 2`: the third request in a minute gets 429 with the flood-control headers."""
    import requests

    base = _free_base()
    stop = threading.Event()
    args = argparse.Namespace(port_base=base, vtiger_per_minute=2)
    worker = threading.Thread(target=sandbox_command.run, args=(args, stop))
    worker.start()
    try:
        out = ""
        for _ in range(200):
            out += capsys.readouterr().out
            if "Ctrl-C" in out:
                break
            time.sleep(0.05)
        url = _exports(out)["VTIGER_URL"]
        answers = [requests.get(f"{url}/webservice.php", params={"operation": "getchallenge", "username": "admin"},
                                timeout=10) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["X-FloodControl-MinuteLimit"] == "2" and "like vTiger Cloud" in out
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
