"""Local simulators of cvrapi.dk, e-conomic and the vTiger/Simply-CRM webservice, for tests and `manage.py sandbox`.

Each simulator runs in-process on 127.0.0.1 (port 0 = any free port), exposes `url`, its data
(`companies` / `customers` / `accounts`), request counters and fault knobs; see docs/INTEGRATIONS.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lib.sandbox import dataset
from lib.sandbox.base import Fault, SimRequest, SimResponse, Simulator
from lib.sandbox.cvrapi_sim import CvrApiSimulator
from lib.sandbox.economic_sim import EconomicSimulator, make_customer
from lib.sandbox.vtiger_sim import VtigerSimulator, make_account

SANDBOX_USER_AGENT = "BMC Sandbox - BMC Hub - Sandbox Bruger sandbox@example.dk"
DEFAULT_PORT_BASE = 8701

__all__ = [
    "CvrApiSimulator", "EconomicSimulator", "Fault", "Sandbox", "SimRequest", "SimResponse", "Simulator",
    "VtigerSimulator", "make_account", "make_customer", "running_cvrapi", "running_economic",
    "running_sandbox", "running_vtiger", "seed_demo",
]


def seed_demo(sim: Simulator) -> Simulator:
    """Fill a simulator with the shared demo data set (lib/sandbox/dataset.py)."""
    if isinstance(sim, CvrApiSimulator):
        for company in dataset.cvr_register():
            sim.add_company(**company)
    elif isinstance(sim, EconomicSimulator):
        sim.customers = dataset.economic_customers()
    elif isinstance(sim, VtigerSimulator):
        sim.cvr_field = dataset.CVR_FIELD
        sim.cvr_label = dataset.CVR_FIELD_LABEL
        sim.accounts = dataset.crm_accounts("simplycrm" if sim.mode == "simply" else "vtiger")
    return sim


@contextmanager
def running_cvrapi(port: int = 0, demo: bool = False) -> Iterator[CvrApiSimulator]:
    with CvrApiSimulator(port=port) as sim:
        yield seed_demo(sim) if demo else sim


@contextmanager
def running_economic(port: int = 0, demo: bool = False) -> Iterator[EconomicSimulator]:
    with EconomicSimulator(port=port) as sim:
        yield seed_demo(sim) if demo else sim


@contextmanager
def running_vtiger(port: int = 0, demo: bool = False, mode: str = "vtiger") -> Iterator[VtigerSimulator]:
    with VtigerSimulator(port=port, mode=mode) as sim:
        yield seed_demo(sim) if demo else sim


@dataclass
class Sandbox:
    """All four targets running together."""

    cvrapi: CvrApiSimulator
    economic: EconomicSimulator
    vtiger: VtigerSimulator
    simplycrm: VtigerSimulator

    def env(self) -> dict[str, str]:
        """The settings that point the Hub at these simulators."""
        return {
            "CVR_API_URL": self.cvrapi.url,
            "CVR_USER_AGENT": SANDBOX_USER_AGENT,
            "ECONOMIC_API_URL": self.economic.url,
            "ECONOMIC_APP_SECRET_TOKEN": self.economic.app_secret_token,
            "ECONOMIC_AGREEMENT_GRANT_TOKEN": self.economic.agreement_grant_token,
            "VTIGER_URL": self.vtiger.url,
            "VTIGER_USERNAME": self.vtiger.username,
            "VTIGER_ACCESS_KEY": self.vtiger.access_key,
            "SIMPLYCRM_URL": self.simplycrm.url,
            "SIMPLYCRM_USERNAME": self.simplycrm.username,
            "SIMPLYCRM_ACCESS_KEY": self.simplycrm.access_key,
        }

    def stop(self) -> None:
        for sim in (self.cvrapi, self.economic, self.vtiger, self.simplycrm):
            sim.stop()


def start_sandbox(port_base: int | None = 0, demo: bool = True) -> Sandbox:
    """Start all simulators: cvrapi on port_base, e-conomic +1, vTiger +2, Simply-CRM +3 (0 = any free ports)."""
    def port(offset: int) -> int:
        return port_base + offset if port_base else 0

    started: list[Simulator] = []
    try:
        for sim in (CvrApiSimulator(port=port(0)), EconomicSimulator(port=port(1)),
                    VtigerSimulator(port=port(2)), VtigerSimulator(port=port(3), mode="simply")):
            sim.start()
            started.append(sim)
    except OSError:
        for sim in started:
            sim.stop()
        raise
    if demo:
        for sim in started:
            seed_demo(sim)
    cvrapi, economic, vtiger, simply = started
    return Sandbox(cvrapi, economic, vtiger, simply)  # type: ignore[arg-type]


@contextmanager
def running_sandbox(port_base: int | None = 0, demo: bool = True) -> Iterator[Sandbox]:
    sandbox = start_sandbox(port_base, demo)
    try:
        yield sandbox
    finally:
        sandbox.stop()
