"""Structured log lines on stderr (key=value or JSON), with every secret setting's value masked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy.engine.url import make_url

from lib.config import SECRET_NAMES, get_settings, is_secret_name, raw_setting, raw_settings_with_prefix
from lib.errors import ConfigError

MASK = "••••••"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("keyvalue", "json")
JOB_LOGGER = "hub.jobs"
_HANDLER_FLAG = "_bmc_hub_handler"
# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def secret_values() -> list[str]:
    """The values of every secret setting that is set now (plus the DATABASE_URL password), longest first."""
    values: set[str] = set()
    for name in SECRET_NAMES:
        value = raw_setting(name)
        if value:
            values.add(value)
    values |= {v for k, v in raw_settings_with_prefix("MODULES__").items() if v and is_secret_name(k.rsplit("__", 1)[-1])}
    database_url = raw_setting("DATABASE_URL")
    if database_url:
        try:
            password = make_url(database_url).password
        except Exception:  # noqa: BLE001 - an unparsable URL is reported elsewhere; nothing to mask here
            password = None
        if password:
            values.add(str(password))
    # A secret may reach a line URL-encoded (a query string) or JSON-escaped, so mask those spellings too.
    values |= {variant for v in list(values)
               for variant in (quote(v, safe=""), quote_plus(v), json.dumps(v, ensure_ascii=False)[1:-1])}
    return sorted(values, key=len, reverse=True)


def mask_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every secret value replaced by a mask."""
    for secret in secret_values() if secrets is None else secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def _masked_value(value: Any, secrets: list[str]) -> Any:
    """A field value with secrets masked; dicts and lists keep their shape (JSON lines nest them)."""
    if isinstance(value, dict | list | tuple):
        encoded = json.dumps(value, ensure_ascii=False, default=str)
        try:
            return json.loads(mask_secrets(encoded, secrets))
        except ValueError:
            return mask_secrets(encoded, secrets)
    return mask_secrets(value if isinstance(value, str) else str(value), secrets)


class SecretMaskFilter(logging.Filter):
    """Rewrites each record so no secret setting's value survives in its message, fields or traceback.

    The secrets are read per record, so a token set after logging was configured is masked too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        if not secrets:
            return True
        record.msg = mask_secrets(record.getMessage(), secrets)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and value is not None and not isinstance(value, bool | int | float):
                record.__dict__[key] = _masked_value(value, secrets)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info, secrets)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    out.update({k: extras.pop(k) for k in ("run_id", "kind") if k in extras})
    out.update(extras)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        out["exc"] = record.exc_text
    return out


def _logfmt_value(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if text == "" or any(c in text for c in ' ="\n\t\\'):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    """`ts=… level=info logger=hub.jobs msg="run started" run_id=12 kind=economic-relink`, one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        return mask_secrets(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same fields as the key=value format."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(json.dumps(_fields(record), ensure_ascii=False, default=str))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each line (test runners and Streamlit swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _level_of(level: str | int | None) -> int:
    if isinstance(level, int):
        return level
    name = (level or get_settings().log_level or "INFO").strip().upper()
    if name not in LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {name!r}")
    return getattr(logging, name)


def configure_logging(level: str | int | None = None, fmt: str | None = None, stream=None) -> logging.Handler:
    """Send log lines to stderr (or `stream`) at `level` (default LOG_LEVEL); calling again replaces, never adds.

    `fmt` is "keyvalue" (default) or "json"; without it a LOG_FORMAT setting is used when the settings have one.
    """
    numeric = _level_of(level)
    fmt = (fmt or getattr(get_settings(), "log_format", None) or "keyvalue").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(existing)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    setattr(handler, _HANDLER_FLAG, True)
    handler.setLevel(numeric)
    handler.addFilter(SecretMaskFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


class JobLogger(logging.LoggerAdapter):
    """Puts run_id and kind on every line; fields given with `extra=` are kept next to them."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return msg, kwargs


def job_logger(run_id: int | None, kind: str, **fields: Any) -> JobLogger:
    """The logger of one job run: `job_logger(12, "economic-relink").info("fetched", extra={"step": "fetch"})`."""
    extra: Mapping[str, Any] = {"run_id": run_id, "kind": kind, **fields}
    return JobLogger(logging.getLogger(JOB_LOGGER), extra)
