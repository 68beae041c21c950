"""Documented promises must match the code: settings, commands, exit codes."""

from __future__ import annotations

import re
from dataclasses import fields

from lib.cli import build_parser
from lib.config import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")


def readme_config_table() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| ([A-Z][A-Z0-9_{}]+) \|", section, re.M)}


def test_every_setting_is_in_the_readme_and_env_example():
    names = {f.name.upper() for f in fields(Settings)}
    documented = readme_config_table()
    assert names - documented == set(), "settings missing from the README configuration table"
    assert documented - names - {"MODULES__{NAME}__{KEY}"} == set(), "README documents settings the code lacks"
    in_example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.M))
    assert names - in_example == set(), ".env.example misses settings"


def test_every_command_is_in_the_readme():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    for name in commands:
        assert f"`{name}" in section, f"manage.py {name} is not documented in the README"


def test_readme_gives_the_two_setup_commands():
    assert "pip install -r requirements.txt && streamlit run Home.py" in README
    assert "pip install -r requirements.txt && pytest" in README


def test_readme_job_rows_come_from_the_job_registry():
    """The jobs' rows of the README's command table are what lib/jobs/registry.py declares, in its order."""
    from lib.commands.jobs import readme_rows

    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    rows = readme_rows()
    assert rows[0] in table, "README's job rows differ from the registry: paste lib.commands.jobs.readme_rows()"
    start = table.index(rows[0])
    assert table[start:start + len(rows)] == rows
