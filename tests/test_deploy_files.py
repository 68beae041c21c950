"""Dockerfile, docker-compose.yml and docs/OPERATIONS.md agree with the project (no Docker engine needed).

What an engine would only find at build or start time is checked here: files the Dockerfile copies exist
and hold every local package the app imports, third-party imports are in the runtime requirements, the
compose file names real commands and documented settings, and every command the operations guide shows
parses.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import sys
from dataclasses import fields
from importlib import metadata
from pathlib import Path

import pytest

from lib.cli import build_parser
from lib.config import Settings
from lib.errors import InputError, ServiceError
from tests.conftest import IN_CI, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCKERIGNORE = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
SETTINGS = {f.name.upper() for f in fields(Settings)}
RUNTIME_MARKER = "# Tests and tooling"


def yaml_module():
    try:
        import yaml
    except ImportError:
        if IN_CI:
            pytest.fail("PyYAML is not installed: add PyYAML to requirements.txt (tests and tooling)")
        pytest.skip("PyYAML is not installed: the compose file cannot be parsed here")
    return yaml


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml_module().safe_load(COMPOSE_TEXT)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def copy_sources() -> list[str]:
    sources = []
    for word, args in instructions():
        if word == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def commands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


# --- Dockerfile -----------------------------------------------------------------------------------------------

def test_base_image_is_slim_python_of_the_projects_version():
    """FROM takes BASE_IMAGE, whose default is the public slim image of the project's Python."""
    base = next(args for word, args in instructions() if word == "FROM")
    assert base == "${BASE_IMAGE}"
    base = next(args.split("=", 1)[1] for word, args in instructions() if word == "ARG" and args.startswith("BASE_IMAGE="))
    target = re.search(r'target-version\s*=\s*"py(\d)(\d+)"', (ROOT / "ruff.toml").read_text()).groups()
    assert base == f"python:{target[0]}.{target[1]}-slim"


def test_every_copied_source_exists_and_is_not_dockerignored():
    sources = copy_sources()
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the project"
        for pattern in DOCKERIGNORE:
            if not pattern.startswith("!"):
                assert not fnmatch.fnmatch(src.rstrip("/"), pattern.rstrip("/")), f"{src} is excluded by {pattern}"


def test_secrets_and_local_data_stay_out_of_the_image():
    for must in (".env", ".streamlit/secrets.toml", "data/", ".git"):
        assert must in DOCKERIGNORE
    copied = copy_sources()
    assert ".env" not in copied and not any(s.startswith(("data", ".streamlit/secrets")) for s in copied)
    assert "COPY . " not in DOCKERFILE  # explicit sources only


def _python_files(sources: list[str]) -> list[Path]:
    files = []
    for src in sources:
        path = ROOT / src
        if path.is_dir():
            files += [p for p in path.rglob("*.py") if "_template" not in p.parts]
        elif path.suffix == ".py":
            files.append(path)
    return files


def _imported_roots(files: list[Path]) -> dict[str, Path]:
    """Top-level names imported by `files` (first importing file for each)."""
    roots: dict[str, Path] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                roots.setdefault(name.split(".")[0], path)
    return roots


def test_the_image_holds_every_local_package_the_app_imports():
    sources = copy_sources()
    copied_tops = {Path(s).parts[0].removesuffix(".py") for s in sources}
    for root, importer in _imported_roots(_python_files(sources)).items():
        if (ROOT / root).is_dir() or (ROOT / f"{root}.py").is_file():
            assert root in copied_tops, f"{importer.relative_to(ROOT)} imports {root}, which the image lacks"


def test_the_image_holds_every_page_file_the_app_names():
    """Pages are named by path (st.Page("app_pages/x.py")), not imported: their folder must be copied too."""
    sources = copy_sources()
    copied_tops = {Path(s).parts[0] for s in sources}
    named = 0
    for path in _python_files(sources):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"[a-z_]+/[\w/]+\.py", node.value) and (ROOT / node.value).is_file():
                named += 1
                assert Path(node.value).parts[0] in copied_tops, (
                    f"{path.relative_to(ROOT)} names {node.value}, which the image lacks")
    assert named, "no page file named by path: has the navigation moved?"


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` install, with their (non-extra) dependencies, as installed here."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" not in req:
                todo.append(_requirement_names([req]).pop())
    return seen


def test_runtime_requirements_cover_every_third_party_import():
    """The image installs requirements.txt up to the test-tools marker: the app must not need more."""
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    marker = next((i for i, line in enumerate(lines) if line.startswith(RUNTIME_MARKER)), None)
    assert marker is not None, f"requirements.txt lost the line {RUNTIME_MARKER!r} the Dockerfile cuts at"
    assert RUNTIME_MARKER in DOCKERFILE
    runtime = _requirement_names(lines[:marker])
    assert {"streamlit", "sqlalchemy", "psycopg2-binary"} <= runtime and "pytest" not in runtime
    installed = _closure(runtime)
    providers = metadata.packages_distributions()
    for root, importer in _imported_roots(_python_files(copy_sources())).items():
        if root in sys.stdlib_module_names or (ROOT / root).exists() or (ROOT / f"{root}.py").exists():
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(root, [])}
        assert dists & installed, (f"{importer.relative_to(ROOT)} imports {root} ({', '.join(dists) or '?'}), "
                                   "which the runtime requirements do not install")


def test_runs_as_a_non_root_user():
    users = [args for word, args in instructions() if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0].isdigit(), "numeric USER, so Kubernetes' runAsNonRoot can check it"


def test_healthcheck_and_cmd_start_the_app_on_the_documented_port():
    health = next(args for word, args in instructions() if word == "HEALTHCHECK")
    assert "/_stcore/health" in health and "/_stcore/health" in README
    assert "http://localhost:8501" in README
    assert next(args for word, args in instructions() if word == "EXPOSE") == "8501"
    assert "127.0.0.1:8501" in health
    cmd = exec_form(next(args for word, args in instructions() if word == "CMD"))
    assert cmd[:3] == ["streamlit", "run", "Home.py"] and (ROOT / "Home.py").is_file()
    assert "--server.port=8501" in cmd and "--server.address=0.0.0.0" in cmd


# --- docker-compose.yml ---------------------------------------------------------------------------------------

def test_compose_has_database_migrate_and_app(compose):
    services = compose["services"]
    assert set(services) == {"db", "migrate", "app"}
    assert services["db"]["image"] == "${POSTGRES_IMAGE:-postgres:15}"
    volume = services["db"]["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate"] and "migrate" in commands()
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["app"]["ports"] == ["${HUB_PORT:-8501}:8501"]
    for name in ("migrate", "app"):
        assert services[name]["build"] == {"context": ".", "args": {"BASE_IMAGE": "${BASE_IMAGE:-python:3.11-slim}"}}
        assert services[name]["env_file"] == "${HUB_ENV_FILE:-.env}"
        url = services[name]["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql+psycopg2://") and "@db:5432/" in url


def test_compose_sets_only_real_settings_and_documents_its_own_variables(compose):
    for name in ("migrate", "app"):
        assert set(compose["services"][name]["environment"]) <= SETTINGS
    variables = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_TEXT))
    assert {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "HUB_PORT"} <= variables
    compose_table = OPERATIONS.split("compose-only variables", 1)[1].split("\n\n", 2)[1]
    for variable in variables - SETTINGS:
        assert f"| {variable} |" in compose_table, f"{variable} is used by docker-compose.yml but not documented"
    for service in compose["services"]:
        assert f"`{service}`" in OPERATIONS


# --- docs/OPERATIONS.md ---------------------------------------------------------------------------------------

def documented_invocations() -> list[list[str]]:
    """Every `manage.py …` command line in the guide (code blocks, crontab lines, YAML command arrays)."""
    found = []
    for match in re.finditer(r"manage\.py ([^`\n>|&]*)", OPERATIONS):
        argv = shlex.split(match.group(1).strip(), comments=True)
        if argv and not argv[0].startswith(("COMMAND", "…")):
            found.append(argv)
    for match in re.finditer(r'\["python", "manage\.py"(, "[^"]+")+\]', OPERATIONS):
        found.append(json.loads(match.group(0))[2:])
    return found


def test_every_documented_command_line_parses():
    argvs = documented_invocations()
    shown = {argv[0] for argv in argvs}
    assert {"economic-relink", "crm-sync", "cvr-lookup", "doctor", "migrate", "runs"} <= shown
    for argv in argvs:
        assert argv[0] in commands(), f"docs/OPERATIONS.md shows manage.py {argv[0]}, which does not exist"
        assert parses(argv), f"docs/OPERATIONS.md: manage.py {' '.join(argv)} is refused by the parser"


def test_documented_exit_codes_match_the_code():
    table = OPERATIONS.split("Exit codes, for cron mail", 1)[1]
    assert f"| {InputError.exit_code} | bad input or configuration, **or the same job is already running**" in table
    assert f"| {ServiceError.exit_code} | an outside service failed" in table
    assert "| 0 | done" in table and "| 1 | anything else" in table


def test_kubernetes_example_is_valid_yaml_that_forbids_overlap():
    yaml = yaml_module()
    block = OPERATIONS.split("```yaml\n", 1)[1].split("```", 1)[0]
    cron_job = yaml.safe_load(block)
    assert cron_job["kind"] == "CronJob" and cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert parses(pod["containers"][0]["command"][2:])


def test_readme_links_the_operations_guide():
    assert "docs/OPERATIONS.md" in README
