"""Jobs: one contract (contract.py), one runner (runner.py), one registry (registry.py), one file per job.

docs/JOBS.md explains the contract, the runner's guarantees and how a module adds a job.
"""

from lib.jobs.payload import job_payload

__all__ = ["job_payload"]
