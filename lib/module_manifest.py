"""`module.json`: the data that describes a module, validated before any module code is imported.

KEYS is the reference: docs/MODULE_SYSTEM.md carries the same table and a test keeps the two equal.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from lib.errors import InputError
from lib.roles import ROLES

MANIFEST_FILE = "module.json"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}\Z")  # \Z, not $: "name\n" is no name
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
DEPENDENCY = re.compile(r"^\s*(?P<name>[a-z][a-z0-9_]{1,39})\s*(?P<spec>[<>=!~][^\s].*)?$")
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}_\Z")
HEALTH_PATTERN = re.compile(r"^(?P<file>[A-Za-z0-9_][A-Za-z0-9_/]*\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")
# Names the module system itself uses: `core` is the core's migration history, `module_` prefixes its tables.
RESERVED_NAMES = frozenset({"core", "module", "modules"})


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    required: bool
    default: str
    meaning: str


KEYS: tuple[Key, ...] = (
    Key("name", "string", True, "—", "must equal the folder name; `^[a-z][a-z0-9_]{1,39}$`"),
    Key("version", "string (semver)", True, "—", "the module's version, e.g. `1.0.0`"),
    Key("description", "string", True, "—", "one line shown on the Modules page"),
    Key("title", "string", False, "name in title case", "the module's name for people, on the Modules page"),
    Key("author", "string", False, '`""`', "who to ask about the module"),
    Key("enabled", "boolean", False, "`false`", "only the default the first time the module is seen"),
    Key("dependencies", "list of strings", False, "`[]`", 'module names, optionally with a version specifier: `"crm_tools>=1.2"`'),
    Key("hub_version", "string (specifier)", False, '`""` (any)', "versions of BMC Hub the module works with, e.g. `>=1.0,<2`"),
    Key("table_prefix", "string", False, "`<name>_`", "every table the module's migrations create or alter must start with it"),
    Key("pages", "list of objects", False, "`[]`", "`{\"file\": \"page.py\", \"title\": \"…\", \"icon\": \":material/…:\"}`; `icon` optional"),
    Key("config", "object", False, "`{}`", "config defaults; `MODULES__{NAME}__{KEY}` overrides them"),
    Key("health", "string", False, "`null`", '`"file.py:function"`; the function returns `True`/`False` or `(bool, "message")`'),
    Key("health_timeout", "number", False, "`5`", "seconds before a running health check counts as failed"),
    Key("required_role", "string", False, '`"viewer"`', "lowest role that sees the module's pages: viewer, operator or admin"),
    Key("reads", "list of strings", False, "`[]`", "core tables the module may read (SELECT only), e.g. `[\"customers\"]`; every other table outside its prefix is refused by the database"),
    Key("settings", "list of objects", False, "`[]`", "settings the Modules page edits: `{\"key\", \"type\", \"default\", \"description\"}` plus `min`/`max`/`choices` (see Settings)"),
    Key("jobs", "list of objects", False, "`[]`", "`{\"name\": \"refresh\", \"file\": \"job.py\", \"class\": \"RefreshJob\", \"title\": \"…\"}`: a lib.jobs.contract.Job subclass, kind `MODULE.name`"),
)
KNOWN_KEYS = tuple(k.name for k in KEYS)


def keys_markdown() -> str:
    """The module.json reference table as docs/MODULE_SYSTEM.md carries it."""
    lines = ["| key | type | required | default | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{k.name}` | {k.type} | {'yes' if k.required else 'no'} | {k.default} | {k.meaning} |" for k in KEYS]
    return "\n".join(lines)
PAGE_KEYS = ("file", "title", "icon")


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str | None = None

    @property
    def slug(self) -> str:
        return PurePosixPath(self.file).with_suffix("").as_posix().replace("/", "_")


SETTING_TYPES = ("bool", "int", "float", "str", "choice", "secret")
SETTING_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
SETTING_FIELDS = ("key", "type", "default", "description", "min", "max", "choices")
# Every module has these two switches; a module may declare them to change the description, not the type.
SAFETY_SETTINGS = ("READ_ONLY", "DRY_RUN")


@dataclass(frozen=True)
class SettingSpec:
    """One editable setting of a module (module.json `settings`)."""

    key: str
    type: str
    default: Any = None
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()


def safety_settings() -> tuple[SettingSpec, ...]:
    return (SettingSpec("READ_ONLY", "bool", True, "nothing is written while on"),
            SettingSpec("DRY_RUN", "bool", True, "writes are shown, not made, while on"))


def _type_ok(kind: str, value: Any, choices: tuple[str, ...] = ()) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "choice":
        return value in choices
    return isinstance(value, str)


def _settings(raw: Any, bad, warnings: list[str], where: str) -> tuple[SettingSpec, ...]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        bad("settings", 'a list of {"key", "type", "default", "description"} objects', raw)
        return safety_settings()
    out: dict[str, SettingSpec] = {s.key: s for s in safety_settings()}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            bad(f"settings[{i}]", 'an object {"key": "PAGE_SIZE", "type": "int", "default": 50}', item)
            continue
        for extra in set(item) - set(SETTING_FIELDS):
            warnings.append(f'{where}: unknown key "settings[{i}].{extra}" ignored')
        key, kind = item.get("key"), item.get("type")
        if not isinstance(key, str) or not SETTING_KEY.match(key):
            bad(f"settings[{i}].key", "upper-case letters, digits and _ (like PAGE_SIZE)", key)
            continue
        if kind not in SETTING_TYPES:
            bad(f"settings[{i}].type", " / ".join(SETTING_TYPES), kind)
            continue
        if key in SAFETY_SETTINGS and kind != "bool":
            bad(f"settings[{i}].type", f"bool ({key} is a safety switch)", kind)
            continue
        choices = item.get("choices", [])
        if kind == "choice" and (not isinstance(choices, list) or not choices
                                 or not all(isinstance(c, str) for c in choices)):
            bad(f"settings[{i}].choices", "a non-empty list of strings", choices)
            continue
        bounds = {}
        for b in ("min", "max"):
            v = item.get(b)
            if v is not None and (kind not in ("int", "float") or isinstance(v, bool) or not isinstance(v, int | float)):
                bad(f"settings[{i}].{b}", "a number, for int and float settings only", v)
                v = None
            bounds[b] = v
        default = item.get("default", out[key].default if key in out else None)
        if default is not None and not _type_ok(kind, default, tuple(choices)):
            bad(f"settings[{i}].default", f"a {kind} value" + (f" from {choices}" if kind == "choice" else ""), default)
            continue
        if kind == "secret" and default not in (None, ""):
            bad(f"settings[{i}].default", "no default (secrets are set on the Modules page or in the environment)",
                "…")
            continue
        description = item.get("description", "")
        if not isinstance(description, str):
            bad(f"settings[{i}].description", "a string", description)
            description = ""
        out[key] = SettingSpec(key, kind, default, description or (out[key].description if key in out else ""),
                               bounds["min"], bounds["max"], tuple(choices) if kind == "choice" else ())
    return tuple(out.values())


@dataclass(frozen=True)
class JobSpec:
    """A job the module declares; lib.jobs.registry builds it as kind "MODULE.name"."""

    name: str
    file: str
    cls: str
    title: str


JOB_FIELDS = ("name", "file", "class", "title")


@dataclass(frozen=True)
class Dependency:
    name: str
    specifier: SpecifierSet

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str
    path: Path
    title: str = ""
    author: str = ""
    enabled: bool = False
    dependencies: tuple[Dependency, ...] = ()
    hub_version: str = ""
    table_prefix: str = ""
    pages: tuple[PageSpec, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    health: str | None = None
    health_timeout: float = 5.0
    required_role: str = "viewer"
    reads: tuple[str, ...] = ()
    settings: tuple[SettingSpec, ...] = ()
    jobs: tuple[JobSpec, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return self.path.parent


class ManifestError(InputError):
    """module.json is unreadable or breaks a rule; every problem is listed."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_version(text: str) -> Version:
    """A semver string as a comparable Version (pre-release tags PEP 440 cannot read are dropped)."""
    try:
        return Version(text)
    except InvalidVersion:
        return Version(re.split(r"[-+]", text, maxsplit=1)[0])


def default_title(name: str) -> str:
    return name.replace("_", " ").title()


def load_manifest(folder: Path) -> Manifest:
    """Read and validate `folder/module.json`; raises ManifestError naming the file, key and expectation."""
    path = folder / MANIFEST_FILE
    where = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([f"{where}: file missing (every module folder needs a module.json)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{where}: cannot be read ({exc})"]) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError([f"{where}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    if not isinstance(data, dict):
        raise ManifestError([f"{where}: expected a JSON object at the top level, got {type(data).__name__}"])
    return validate_manifest(data, path)


def validate_manifest(data: dict[str, Any], path: Path) -> Manifest:
    """Check every key of a parsed module.json; all problems at once."""
    where = str(path)
    problems: list[str] = []
    warnings: list[str] = []

    def bad(key: str, expected: str, value: Any = ...) -> None:
        got = "" if value is ... else f", got {json.dumps(value, ensure_ascii=False, default=str)}"
        problems.append(f'{where}: key "{key}": expected {expected}{got}')

    for key in data:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            warnings.append(f'{where}: unknown key "{key}" ignored{hint}')
    for key in (k.name for k in KEYS if k.required):
        if key not in data:
            problems.append(f'{where}: key "{key}": required but missing')

    def text(key: str, default: str = "") -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            bad(key, "a string", value)
            return default
        return value

    name = text("name")
    folder_name = path.parent.name
    if "name" in data and isinstance(data["name"], str):
        if not NAME_PATTERN.match(name):
            bad("name", "lower-case letters, digits and _ (2-40 characters, starting with a letter)", name)
        elif name != folder_name:
            bad("name", f'the folder name "{folder_name}"', name)
        elif name in RESERVED_NAMES:
            bad("name", f"a name other than the reserved {', '.join(sorted(RESERVED_NAMES))}", name)
    version = text("version")
    if "version" in data and isinstance(data["version"], str) and not SEMVER.match(version):
        bad("version", "a semantic version like 1.0.0", version)
    description = text("description")
    if "description" in data and isinstance(data["description"], str) and not description.strip():
        bad("description", "a non-empty string", description)
    title = text("title") or default_title(name)
    author = text("author")

    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        bad("enabled", "true or false", enabled)
        enabled = False

    dependencies: list[Dependency] = []
    raw_deps = data.get("dependencies", [])
    if not isinstance(raw_deps, list):
        bad("dependencies", 'a list of module names like "crm_tools>=1.2"', raw_deps)
        raw_deps = []
    for i, item in enumerate(raw_deps):
        m = DEPENDENCY.match(item) if isinstance(item, str) else None
        if not m:
            bad(f"dependencies[{i}]", 'a module name, optionally with a version specifier like "crm_tools>=1.2"', item)
            continue
        try:
            spec = SpecifierSet(m.group("spec") or "")
        except InvalidSpecifier:
            bad(f"dependencies[{i}]", 'a valid version specifier such as ">=1.2,<2"', item)
            continue
        if m.group("name") == name:
            bad(f"dependencies[{i}]", "another module (a module cannot depend on itself)", item)
            continue
        dependencies.append(Dependency(m.group("name"), spec))

    hub_version = text("hub_version")
    if hub_version:
        try:
            SpecifierSet(hub_version)
        except InvalidSpecifier:
            bad("hub_version", 'a version specifier such as ">=1.0,<2"', hub_version)

    prefix = text("table_prefix", f"{name}_")
    if "table_prefix" in data and isinstance(data["table_prefix"], str) and not PREFIX_PATTERN.match(prefix):
        bad("table_prefix", "lower-case letters, digits and _, ending in _", prefix)

    pages: list[PageSpec] = []
    raw_pages = data.get("pages", [])
    if not isinstance(raw_pages, list):
        bad("pages", 'a list of {"file", "title", "icon"} objects', raw_pages)
        raw_pages = []
    slugs: set[str] = set()
    for i, item in enumerate(raw_pages):
        if not isinstance(item, dict):
            bad(f"pages[{i}]", 'an object {"file": "page.py", "title": "…"}', item)
            continue
        for extra in set(item) - set(PAGE_KEYS):
            warnings.append(f'{where}: unknown key "pages[{i}].{extra}" ignored')
        file = item.get("file")
        page_title = item.get("title")
        icon = item.get("icon")
        rel = PurePosixPath(file) if isinstance(file, str) else None
        if rel is None or rel.is_absolute() or ".." in rel.parts or rel.suffix != ".py" or "\\" in file:
            bad(f"pages[{i}].file", "a .py file inside the module folder, like page.py", file)
        elif not (path.parent / rel).is_file():
            bad(f"pages[{i}].file", f"an existing file, but {path.parent / rel} does not exist", file)
        if not isinstance(page_title, str) or not page_title.strip():
            bad(f"pages[{i}].title", "a non-empty string", page_title)
        if icon is not None and not isinstance(icon, str):
            bad(f"pages[{i}].icon", 'an emoji or ":material/name:"', icon)
        if isinstance(file, str) and isinstance(page_title, str):
            page = PageSpec(file, page_title, icon)
            if page.slug in slugs:
                bad(f"pages[{i}].file", "a file name not used by another page of this module", file)
            slugs.add(page.slug)
            pages.append(page)

    config = data.get("config", {})
    if not isinstance(config, dict):
        bad("config", 'an object such as {"READ_ONLY": true, "DRY_RUN": true}', config)
        config = {}

    health = data.get("health")
    if health is not None:
        m = HEALTH_PATTERN.match(health) if isinstance(health, str) else None
        if not m or ".." in health:
            bad("health", '"file.py:function" naming a function in the module folder', health)
            health = None
        elif not (path.parent / m.group("file")).is_file():
            bad("health", f"an existing file, but {path.parent / m.group('file')} does not exist", health)
    health_timeout = data.get("health_timeout", 5)
    if isinstance(health_timeout, bool) or not isinstance(health_timeout, int | float) or not 0 < health_timeout <= 60:
        bad("health_timeout", "a number of seconds between 0 and 60", health_timeout)
        health_timeout = 5
    required_role = data.get("required_role", "viewer")
    if required_role not in ROLES:
        bad("required_role", " or ".join(ROLES), required_role)
        required_role = "viewer"

    reads = data.get("reads", [])
    if not isinstance(reads, list) or not all(isinstance(r, str) and re.fullmatch(r"[a-z][a-z0-9_]*", r)
                                              for r in reads):
        bad("reads", 'a list of table names like ["customers"]', reads)
        reads = []
    settings = _settings(data.get("settings"), bad, warnings, where)
    jobs: list[JobSpec] = []
    raw_jobs = data.get("jobs", [])
    if not isinstance(raw_jobs, list):
        bad("jobs", 'a list of {"name", "file", "class", "title"} objects', raw_jobs)
        raw_jobs = []
    for i, item in enumerate(raw_jobs):
        if not isinstance(item, dict):
            bad(f"jobs[{i}]", 'an object {"name": "refresh", "file": "job.py", "class": "RefreshJob", "title": "…"}',
                item)
            continue
        job_name, file, cls = item.get("name"), item.get("file"), item.get("class")
        rel = PurePosixPath(file) if isinstance(file, str) else None
        if not isinstance(job_name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", job_name):
            bad(f"jobs[{i}].name", "lower-case letters, digits and _", job_name)
        elif rel is None or rel.is_absolute() or ".." in rel.parts or rel.suffix != ".py":
            bad(f"jobs[{i}].file", "a .py file inside the module folder, like job.py", file)
        elif not (path.parent / rel).is_file():
            bad(f"jobs[{i}].file", f"an existing file, but {path.parent / rel} does not exist", file)
        elif not isinstance(cls, str) or not cls.isidentifier():
            bad(f"jobs[{i}].class", "the name of a lib.jobs.contract.Job subclass in that file", cls)
        else:
            title = item.get("title") if isinstance(item.get("title"), str) else job_name
            jobs.append(JobSpec(job_name, file, cls, title))

    if problems:
        raise ManifestError(problems + warnings)
    return Manifest(
        name=name, version=version, description=description, path=path, title=title, author=author,
        enabled=enabled, dependencies=tuple(dependencies), hub_version=hub_version, table_prefix=prefix,
        pages=tuple(pages), config=dict(config), health=health, health_timeout=float(health_timeout),
        required_role=required_role, reads=tuple(dict.fromkeys(reads)), settings=settings, jobs=tuple(jobs),
        warnings=tuple(warnings),
    )
