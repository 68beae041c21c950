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
