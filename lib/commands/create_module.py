"""`manage.py create-module NAME "DESCRIPTION" [--title T] [--json]`: scaffold a module from modules/_template."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

from lib.cli import emit
from lib.errors import InputError
from lib.module_manifest import MANIFEST_FILE, NAME_PATTERN, RESERVED_NAMES, Manifest, default_title
from lib.module_tables import prefix_clash
from lib.modules import BUNDLED_TEMPLATE, TEMPLATE_FOLDER, discover_manifests, modules_dir

NAME = "create-module"
HELP = "scaffold modules/NAME from modules/_template (created disabled)"

TEMPLATE_NAME = "template_module"
TEMPLATE_TITLE = "Template Module"
TEMPLATE_DESCRIPTION = "A working example module: a list of items you can create, edit and delete."
TEXT_SUFFIXES = {".py", ".sql", ".md", ".json", ".txt", ".toml"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="module name: lower-case letters, digits and _, 2-40 characters")
    parser.add_argument("description", help="one line saying what the module does")
    parser.add_argument("--title", help="title in the navigation (default: the name in title case)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def validate_new_module(name: str, description: str, directory: Path) -> Path:
    """The folder to create; InputError (nothing written) for a bad name or description, or a clash."""
    if not NAME_PATTERN.match(name):
        raise InputError(f"invalid module name {name!r}: use ^[a-z][a-z0-9_]{{1,39}}$ (e.g. crm_tools)")
    if name in RESERVED_NAMES:
        raise InputError(f"module name {name!r} is reserved")
    if clash := prefix_clash(f"{name}_"):
        raise InputError(f"module name {name!r}: its tables ({name}_…) would reach the core table {clash!r}")
    if not description.strip() or "\n" in description or len(description) > 200:
        raise InputError("the description must be one non-empty line of at most 200 characters")
    target = directory / name
    root = directory.resolve()
    if target.resolve().parent != root:
        raise InputError(f"module folder {target} would be outside MODULES_DIR {root}")
    if target.exists() or target.is_symlink():
        raise InputError(f"module {name!r} already exists at {target}")
    for other in discover_manifests(directory).values():
        if isinstance(other, Manifest) and other.table_prefix == f"{name}_":
            raise InputError(f"module {other.name} already uses the table prefix {name}_")
    return target


def template_folder(directory: Path) -> Path:
    """MODULES_DIR/_template when there is one, else the template shipped with the Hub."""
    local = directory / TEMPLATE_FOLDER
    return local if (local / MANIFEST_FILE).is_file() else BUNDLED_TEMPLATE


def _fill(content: str, name: str, title: str, description: str) -> str:
    return (content.replace(TEMPLATE_DESCRIPTION, description)
            .replace(TEMPLATE_NAME.upper(), name.upper())
            .replace(TEMPLATE_TITLE, title)
            .replace(TEMPLATE_NAME, name))


def create_module(name: str, description: str, title: str | None = None) -> tuple[Path, list[str]]:
    """Copy the template to MODULES_DIR/NAME with every placeholder replaced; returns the folder and its files."""
    directory = modules_dir()
    target = validate_new_module(name, description, directory)
    title = (title or default_title(name)).strip()
    if not re.fullmatch(r"[^\"\\\n]{1,60}", title):
        raise InputError("the title must be one line of at most 60 characters without quotes or backslashes")
    source = template_folder(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".{name}.creating-{os.getpid()}"  # dot folders are never discovered
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        files = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            if path.suffix in TEXT_SUFFIXES:
                content = path.read_text(encoding="utf-8")
                if path.name == MANIFEST_FILE:  # filled as data, so quotes in the description stay valid JSON
                    data = json.loads(_fill(content, name, title, TEMPLATE_DESCRIPTION))
                    data.update(name=name, title=title, description=description, enabled=False)
                    content = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
                else:
                    content = _fill(content, name, title, description)
                path.write_text(content, encoding="utf-8")
            files.append(path.relative_to(staging).as_posix())
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, files


def _human(data: dict) -> str:
    steps = "\n".join(f"  {i}. {s}" for i, s in enumerate(data["next_steps"], start=1))
    return f"created {data['path']} (disabled) with {len(data['files'])} files\nnext steps:\n{steps}"


def run(args: argparse.Namespace) -> int:
    target, files = create_module(args.name, args.description, args.title)
    emit(args, {
        "name": args.name, "path": str(target), "files": files, "enabled": False,
        "next_steps": [
            f"edit {target / 'page.py'} and {target / 'migrations' / '001_init.sql'} (tables start with {args.name}_)",
            f"python manage.py modules enable {args.name}   (applies its migrations, then enables it)",
            "streamlit run Home.py   (the page appears under Modules; it starts READ_ONLY and DRY_RUN)",
            f"switch READ_ONLY and DRY_RUN off in its settings on the Modules page "
            f"(or `python manage.py modules set {args.name} READ_ONLY false`) to let it write",
        ],
    }, _human)
    return 0
