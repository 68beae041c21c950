"""docs/MODULE_SYSTEM.md's module.json reference and the validator must agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib.module_manifest import KEYS, KNOWN_KEYS, ManifestError, keys_markdown, validate_manifest
from tests.conftest import ROOT

DOC = ROOT / "docs" / "MODULE_SYSTEM.md"


def doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([a-z_]+)` \|", line)
        if m and line.count("|") >= 6:
            rows[m.group(1)] = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    return rows


def test_doc_table_lists_every_key_with_the_validators_type_required_flag_and_default():
    rows = doc_rows()
    assert list(rows) == [k.name for k in KEYS], "docs/MODULE_SYSTEM.md keys differ from lib.module_manifest.KEYS"
    for key in KEYS:
        _, type_, required, default = rows[key.name][:4]
        assert (type_, required, default) == (key.type, "yes" if key.required else "no", key.default), key.name
    assert keys_markdown() in DOC.read_text(encoding="utf-8"), "paste lib.module_manifest.keys_markdown() into the doc"


def minimal(folder: Path) -> dict:
    return {k.name: {"name": folder.name, "version": "1.0.0", "description": "d"}[k.name] for k in KEYS if k.required}


def test_required_keys_are_required_and_documented_keys_are_known(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "page.py").write_text("")
    (folder / "health.py").write_text("def check():\n    return True\n")
    base = minimal(folder)
    validate_manifest(base, folder / "module.json")
    for key in base:
        with pytest.raises(ManifestError, match=f'key "{key}": required but missing'):
            validate_manifest({k: v for k, v in base.items() if k != key}, folder / "module.json")
    full = {**base, "title": "Demo", "author": "a", "enabled": True, "dependencies": ["other>=1"], "hub_version": ">=1",
            "table_prefix": "demo_", "pages": [{"file": "page.py", "title": "P", "icon": ":material/home:"}],
            "config": {"READ_ONLY": True}, "health": "health.py:check", "health_timeout": 2, "required_role": "admin",
            "reads": ["customers"], "jobs": [{"name": "sync", "file": "health.py", "class": "SyncJob", "title": "Sync"}],
            "settings": [{"key": "PAGE_SIZE", "type": "int", "default": 50, "description": "rows", "min": 1, "max": 500},
                         {"key": "MODE", "type": "choice", "default": "a", "choices": ["a", "b"]},
                         {"key": "API_TOKEN", "type": "secret"}]}
    assert set(full) == set(KNOWN_KEYS)
    assert validate_manifest(full, folder / "module.json").warnings == ()
    with_unknown = validate_manifest({**base, "colour": "x"}, folder / "module.json")
    assert with_unknown.warnings and 'unknown key "colour"' in with_unknown.warnings[0]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("name", "other", 'key "name": expected the folder name "demo"'),
        ("version", "1.0", 'key "version": expected a semantic version like 1.0.0, got "1.0"'),
        ("enabled", "yes", 'key "enabled": expected true or false'),
        ("dependencies", ["Bad Name"], 'key "dependencies[0]": expected a module name'),
        ("hub_version", "about 1", 'key "hub_version": expected a version specifier'),
        ("table_prefix", "Demo", 'key "table_prefix": expected lower-case'),
        ("pages", [{"file": "../escape.py", "title": "x"}], 'key "pages[0].file": expected a .py file inside'),
        ("pages", [{"file": "nope.py", "title": "x"}], "does not exist"),
        ("config", [1], 'key "config": expected an object'),
        ("health", "health.py", 'key "health": expected "file.py:function"'),
        ("health_timeout", 0, 'key "health_timeout": expected a number of seconds'),
        ("required_role", "root", 'key "required_role": expected viewer or operator or admin'),
        ("reads", "customers", 'key "reads": expected a list of table names'),
        ("settings", [{"key": "page size", "type": "int"}], 'key "settings[0].key": expected upper-case'),
        ("settings", [{"key": "N", "type": "number"}], 'key "settings[0].type": expected bool / int'),
        ("settings", [{"key": "N", "type": "int", "default": "5"}], 'key "settings[0].default": expected a int'),
        ("settings", [{"key": "M", "type": "choice"}], 'key "settings[0].choices": expected a non-empty list'),
        ("settings", [{"key": "READ_ONLY", "type": "str"}], "READ_ONLY is a safety switch"),
        ("settings", [{"key": "T", "type": "secret", "default": "x"}], 'key "settings[0].default": expected no'),
        ("jobs", [{"name": "sync", "file": "nope.py", "class": "SyncJob"}], "does not exist"),
        ("jobs", {"sync": "health.py:check"}, 'key "jobs": expected a list'),
    ],
)
def test_errors_name_the_file_the_key_and_the_expectation(tmp_path, key, value, expected):
    folder = tmp_path / "demo"
    folder.mkdir()
    with pytest.raises(ManifestError) as err:
        validate_manifest({**minimal(folder), key: value}, folder / "module.json")
    assert str(folder / "module.json") in str(err.value) and expected in str(err.value)
