"""Every job by kind: the core jobs (lib/jobs/) and the jobs modules declare in module.json.

`get_job(kind)` builds a job from its kind alone ("cvr-lookup", or "MODULE.JOB" for a module's job);
`core_jobs()` feeds manage.py's subcommands, the navigation's Jobs section and the README's command table.
Reads only: looking a job up never writes.
"""

from __future__ import annotations

import importlib

from lib.errors import InputError
from lib.jobs.contract import Job

# "module:Class", in the order the CLI help, the navigation and the README list them
CORE_JOBS: tuple[str, ...] = (
    "lib.jobs.import_subscriptions:ImportSubscriptionsJob",
    "lib.jobs.cvr_lookup:CvrLookupJob",
    "lib.jobs.economic_relink:EconomicRelinkJob",
    "lib.jobs.crm_sync:CrmSyncJob",
)

# Side jobs: started by a core job's page (in a worker) or command, never a command of their own; `get_job`
# builds them by kind so a worker process can apply them through the runner.
SIDE_JOBS: tuple[str, ...] = (
    "lib.jobs.economic_relink:EconomicImportCustomersJob",
    "lib.jobs.crm_sync:CrmWriteBackJob",
)


def _load(reference: str) -> type[Job]:
    module_name, _, class_name = reference.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def core_jobs() -> list[Job]:
    return [_load(reference)() for reference in CORE_JOBS]


def module_job_specs() -> dict[str, tuple]:
    """kind "MODULE.JOB" → (manifest, job spec) for every valid module manifest that declares jobs."""
    from lib.module_manifest import Manifest
    from lib.modules import discover_manifests

    out: dict[str, tuple] = {}
    for name, manifest in sorted(discover_manifests().items()):
        if not isinstance(manifest, Manifest):
            continue
        for spec in getattr(manifest, "jobs", ()):
            out[f"{name}.{spec.name}"] = (manifest, spec)
    return out


def module_of(kind: str) -> str | None:
    """The module a job kind belongs to ("cvr_watch" for "cvr_watch.refresh"), None for a core job."""
    return kind.partition(".")[0] if "." in kind else None


def _module_job(kind: str) -> Job:
    from lib.modules import load_module_file

    found = module_job_specs().get(kind)
    if found is None:
        raise InputError(f"there is no module job {kind!r} (jobs are named MODULE.JOB; "
                         "`manage.py job list` shows them)")
    manifest, spec = found
    code = load_module_file(manifest, spec.file, f"job_{spec.name}")
    cls = getattr(code, spec.cls, None)
    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise InputError(f"{manifest.name}/{spec.file} has no job class {spec.cls} (a subclass of lib.jobs.contract.Job)")
    job = cls()
    job.kind = kind  # the kind is the manifest's, whatever the class says
    job.module = manifest.name
    if not getattr(job, "title", None):
        job.title = spec.title
    return job


def require_enabled(engine, kind: str) -> None:
    """InputError (exit 2) unless the module a job belongs to is enabled and available; reads only."""
    name = module_of(kind)
    if name is None:
        return
    from lib.modules import load_registry

    registry = load_registry(engine)
    if not registry.system_enabled:
        raise InputError("the module system is switched off (MODULES_ENABLED=false)")
    info = registry.get(name)
    if info is None or info not in registry.active():
        why = f": {info.error}" if info is not None and info.error else ""
        raise InputError(f"module {name} is not enabled{why}; `manage.py modules enable {name}` first")


def get_job(kind: str) -> Job:
    """The job of this kind, built from the kind alone; InputError (exit 2) for an unknown kind."""
    if "." in kind:
        return _module_job(kind)
    for job in core_jobs():
        if job.kind == kind:
            return job
    for reference in SIDE_JOBS:
        cls = _load(reference)
        if cls.kind == kind:
            return cls()
    raise InputError(f"there is no job {kind!r}; the jobs are: {', '.join(j.kind for j in core_jobs())}")
