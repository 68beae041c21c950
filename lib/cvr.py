"""Danish CVR numbers: normalise and validate with python-stdnum."""

from __future__ import annotations

from stdnum.dk import cvr as stdnum_cvr
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength, ValidationError


class InvalidCVR(ValueError):
    """A CVR number that is not 8 digits with a valid modulus-11 check digit."""


def validate_cvr(value: object) -> str:
    """Return the 8-digit CVR for `value` ("DK 13 58 56 28" → "13585628") or raise InvalidCVR."""
    text = str(value).strip() if value is not None else ""
    if text.endswith(".0") and text[:-2].isdigit():  # spreadsheet floats
        text = text[:-2]
    if not text:
        raise InvalidCVR("CVR number is empty")
    try:
        return stdnum_cvr.validate(text)
    except InvalidLength:
        raise InvalidCVR(f"CVR number {text!r} must have 8 digits") from None
    except InvalidChecksum:
        raise InvalidCVR(f"CVR number {text!r} fails the modulus-11 check") from None
    except InvalidFormat:
        raise InvalidCVR(f"CVR number {text!r} must be 8 digits, not starting with 0") from None
    except ValidationError as exc:
        raise InvalidCVR(f"CVR number {text!r} is not valid: {exc}") from None


def normalize_cvr(value: object) -> str | None:
    """The valid 8-digit CVR in `value`, or None when it is empty or invalid."""
    if value is None or str(value).strip() == "":
        return None
    try:
        return validate_cvr(value)
    except InvalidCVR:
        return None


def is_valid_cvr(value: object) -> bool:
    return normalize_cvr(value) is not None


def make_cvr(seed: int) -> str:
    """A valid CVR number, distinct for each seed below 4,499,999 (demo and test data)."""
    weights = (2, 7, 6, 5, 4, 3, 2)
    base = 1_000_000 + 2 * ((seed * 7919) % 4_499_999)
    for candidate in (base, base + 1):  # at most one of two neighbours needs check digit 10
        remainder = sum(w * int(d) for w, d in zip(weights, str(candidate), strict=True)) % 11
        check = (11 - remainder) % 11
        if check < 10:
            return f"{candidate}{check}"
    raise AssertionError("unreachable: two neighbouring bases cannot both need check digit 10")
