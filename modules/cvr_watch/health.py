"""cvr_watch health: its tables and the customers it watches can be read; says how many alerts are open."""

from lib.db import get_engine
from lib.modules import module_code


def check() -> tuple[bool, str]:
    state = module_code("cvr_watch", "watch.py").status(get_engine())
    last = state["last_check"] or "never"
    message = (f"{state['open_alerts']} open alert(s); {state['checked']} of {state['watched']} customer(s) "
               f"with a CVR number checked; last check {last}")
    if state["config_problem"]:
        message += f"; runs cannot look up yet: {state['config_problem']}"
    return True, message
