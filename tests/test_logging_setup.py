"""Structured log lines: run_id and kind on each job line, level from LOG_LEVEL, secrets never printed."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from lib.config import SECRET_NAMES
from lib.errors import ConfigError
from lib.logging_setup import MASK, configure_logging, job_logger
from tests.conftest import ROOT

TOKENS = {name: f"tok-{name.lower()}-Zq81xP" for name in SECRET_NAMES}


@pytest.fixture
def log_stream():
    """Logging configured into a buffer; the handler is removed afterwards."""
    stream = io.StringIO()
    handlers = []

    def configure(**kwargs) -> io.StringIO:
        handlers.append(configure_logging(stream=stream, **kwargs))
        return stream

    yield configure
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def test_job_lines_carry_run_id_and_kind(log_stream):
    stream = log_stream(level="INFO")
    log = job_logger(42, "economic-relink")
    log.info("run started", extra={"step": "start", "user": "ann"})
    log.info("fetched customers", extra={"step": "fetch", "count": 120})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "run_id=42" in line and "kind=economic-relink" in line and "level=info" in line
    assert 'msg="run started"' in lines[0] and "step=start" in lines[0] and "user=ann" in lines[0]
    assert "count=120" in lines[1]


def test_json_lines_parse_and_hold_the_fields(log_stream):
    stream = log_stream(level="INFO", fmt="json")
    job_logger(7, "cvr-lookup").warning("quota exhausted", extra={"step": "lookup", "done": 3})
    record = json.loads(stream.getvalue().strip())
    assert record["run_id"] == 7 and record["kind"] == "cvr-lookup" and record["level"] == "warning"
    assert record["msg"] == "quota exhausted" and record["done"] == 3 and record["ts"].endswith("Z")


def test_level_comes_from_log_level_setting(log_stream, monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    stream = log_stream()
    log = job_logger(1, "demo")
    log.info("hidden step")
    log.warning("shown step")
    out = stream.getvalue()
    assert "hidden step" not in out and "shown step" in out


def test_bad_log_level_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "CHATTY")
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        configure_logging(stream=io.StringIO())


def test_configure_twice_gives_one_line_per_record(log_stream):
    log_stream(level="INFO")
    stream = log_stream(level="INFO")
    job_logger(1, "demo").info("once")
    assert stream.getvalue().count("once") == 1
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_bmc_hub_handler", False)]
    assert len(ours) == 1


@pytest.mark.parametrize("fmt", ["keyvalue", "json"])
def test_no_secret_setting_value_ever_reaches_a_line(log_stream, monkeypatch, fmt):
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://hub:pw-S3cret!x@db:5432/hub")
    stream = log_stream(level="DEBUG", fmt=fmt)
    log = job_logger(5, "economic-relink")
    every = " ".join(TOKENS.values())
    log.info("headers %s", every, extra={"step": "auth", "token": TOKENS["ECONOMIC_APP_SECRET_TOKEN"],
                                         "headers": {"X-AppSecretToken": TOKENS["ECONOMIC_APP_SECRET_TOKEN"]}})
    logging.getLogger("urllib3.connectionpool").debug("GET /api?token=%s", TOKENS["CVR_API_TOKEN"])
    logging.getLogger("sqlalchemy").error("connect to postgresql+psycopg2://hub:pw-S3cret!x@db failed")
    try:
        raise RuntimeError(f"refused {TOKENS['VTIGER_ACCESS_KEY']}")
    except RuntimeError:
        log.exception("step failed")
    out = stream.getvalue()
    for value in [*TOKENS.values(), "pw-S3cret!x"]:
        assert value not in out
    assert out.count(MASK) >= len(TOKENS) + 4
    assert "run_id" in out and "RuntimeError" in out


def test_secret_set_after_configuring_is_still_masked(log_stream, monkeypatch):
    stream = log_stream(level="INFO")
    monkeypatch.setenv("SIMPLYCRM_ACCESS_KEY", "late-key-98765")
    job_logger(2, "crm-sync").info("login with late-key-98765")
    assert "late-key-98765" not in stream.getvalue() and MASK in stream.getvalue()


def test_url_encoded_secret_is_masked(log_stream, monkeypatch):
    monkeypatch.setenv("CVR_API_TOKEN", "a b/c+d")
    stream = log_stream(level="INFO")
    logging.getLogger("hub.test").info("GET https://cvrapi.dk/api?token=a%20b%2Fc%2Bd and token=a+b%2Fc%2Bd")
    assert "a%20b%2Fc%2Bd" not in stream.getvalue() and "a+b%2Fc%2Bd" not in stream.getvalue()


def test_a_real_process_logs_to_stderr_without_the_token(tmp_path):
    """The way manage.py uses it: configure, log, and the line lands on stderr, masked."""
    code = ("from lib.logging_setup import configure_logging, job_logger\n"
            "configure_logging()\n"
            "job_logger(9, 'economic-relink').info('using token tok-live-123456', extra={'step': 'start'})\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO",
           "ECONOMIC_APP_SECRET_TOKEN": "tok-live-123456", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "run_id=9" in done.stderr and "kind=economic-relink" in done.stderr
    assert "tok-live-123456" not in done.stderr


def test_lines_follow_the_current_stderr(capsys):
    """Configured once, the handler writes to whatever sys.stderr is now (pytest and Streamlit swap it)."""
    handler = configure_logging(level="INFO")
    try:
        job_logger(3, "demo").info("to the current stderr")
        assert "to the current stderr" in capsys.readouterr().err
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)


def test_nested_fields_stay_nested_and_masked(log_stream, monkeypatch):
    monkeypatch.setenv("VTIGER_ACCESS_KEY", 'k"ey\\with-quote')
    stream = log_stream(level="INFO", fmt="json")
    job_logger(4, "crm-sync").info("run succeeded", extra={"step": "finish",
                                                           "stats": {"updated": 2, "note": 'k"ey\\with-quote'}})
    record = json.loads(stream.getvalue())
    assert list(record)[4:6] == ["run_id", "kind"]
    assert record["stats"] == {"updated": 2, "note": MASK}
    assert "with-quote" not in stream.getvalue()


def test_keyvalue_renders_nested_fields_as_compact_json(log_stream):
    stream = log_stream(level="INFO")
    job_logger(4, "crm-sync").info("run succeeded", extra={"stats": {"updated": 2}})
    line = stream.getvalue().strip()
    assert 'stats={"updated":2}' in line
    assert line.index("run_id=4") < line.index("kind=crm-sync") < line.index("stats=")
