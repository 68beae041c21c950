"""Streamlit pieces of the CVR lookup: the proposals table, approval checkboxes, the one-customer lookup."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from lib.cvr_lookup import AMBIGUOUS, FOUND, NOT_FOUND, CvrLookupPlan, CvrProposal, QuotaStatus, lookup_one
from lib.errors import HubError
from lib.formatting import outcome_word
from lib.roles import Actor

OUTCOME_LABELS = {o: outcome_word("cvr-lookup", o) for o in (FOUND, AMBIGUOUS, NOT_FOUND)}  # the glossary's words


def quota_text(status: QuotaStatus) -> str:
    if status.limit is None:
        return f"A paid CVR_API_TOKEN is set: no daily limit known ({status.used_today} lookup(s) today)."
    if status.exhausted_today:
        return ("cvrapi.dk refused a lookup today (quota or ban): expect no more lookups until tomorrow. "
                "Answers already cached are still used.")
    return (f"{status.used_today} of {status.limit} free lookups used today, as far as this database knows "
            "(cvrapi.dk counts per IP address, so other programs behind the same address count too).")


def proposals_frame(proposals: list[CvrProposal]) -> pd.DataFrame:
    return pd.DataFrame([
        {
            "customer": f"{p.customer_name} (#{p.customer_id})",
            "outcome": OUTCOME_LABELS[p.outcome],
            "found company": p.company_name or "",
            "CVR": p.cvr or "",
            "address": p.address or "",
            "score": p.score,
            "evidence": "; ".join([p.reason, *p.reasons]),
        }
        for p in proposals
    ], columns=["customer", "outcome", "found company", "CVR", "address", "score", "evidence"])


def approval_checkboxes(plan: CvrLookupPlan, *, disabled: bool = False) -> set[str]:
    """One checkbox per ambiguous proposal a person may accept; returns the ticked proposal keys."""
    approvable = [p for p in plan.proposals if p.approvable]
    if not approvable:
        return set()
    st.markdown(f"**Accept proposals that need a person** ({len(approvable)})")
    st.caption("Tick only where you have checked that the company is the customer.")
    ticked = set()
    for p in approvable:
        label = f"{p.customer_name} → {p.company_name}, CVR {p.cvr} ({p.address or 'no address'}) — {p.reason}"
        if st.checkbox(label, key=f"cvr_ok_{p.key}", disabled=disabled):
            ticked.add(p.key)
    return ticked


def _show_proposal(p: dict) -> None:
    if p["company_name"] is None:
        st.info(f"Not found: {p['reason']}.")
        return
    text = (f"**{p['company_name']}**, CVR {p['cvr']}, {p['address'] or 'no address'} · name score "
            f"{p['score']}\n\n{p['reason']}")
    if p["outcome"] == FOUND:
        st.success(f"Found: {text}")
    elif p["outcome"] == AMBIGUOUS:
        st.warning(f"Needs a person: {text}")
    else:
        st.info(f"Not the same company: {text}")


def customer_cvr_lookup(engine: Engine, customer: dict, actor: Actor) -> None:
    """The customer page's "Look up CVR" button: one lookup (cached), the evidence, and saving the number."""
    cid = customer["id"]
    state, note = f"cvr_one_{cid}", f"cvr_one_note_{cid}"
    message = st.session_state.pop(note, None)
    if message:
        st.success(message)
    if customer.get("cvr_number"):
        return
    may_write = actor.can("operator")
    if st.button("Look up CVR at cvrapi.dk", key=f"cvr_one_look_{cid}", disabled=not may_write,
                 help="One name search (answers are cached); nothing is saved until you confirm."):
        try:
            st.session_state[state] = lookup_one(engine, cid, actor=actor, apply=False)
        except HubError as exc:
            st.error(str(exc))
    result = st.session_state.get(state)
    if not result:
        return
    if result.get("stopped"):
        st.error(f"cvrapi.dk stopped the lookup: {result['stopped']}")
    proposal = result.get("proposal")
    if proposal is None:
        return
    _show_proposal(proposal)
    approved_key = None
    if proposal["outcome"] == AMBIGUOUS and proposal["approvable"]:
        if not st.checkbox("I have checked: this is the customer's company", key=f"cvr_one_ok_{cid}"):
            return
        approved_key = proposal["key"]
    elif proposal["outcome"] != FOUND:
        return
    if st.button(f"Save CVR {proposal['cvr']}", key=f"cvr_one_save_{cid}", type="primary", disabled=not may_write):
        try:
            out = lookup_one(engine, cid, actor=actor, apply=True, approved_key=approved_key)
        except HubError as exc:
            st.error(str(exc))
            return
        if out["updated"]:
            st.session_state.pop(state, None)
            st.session_state[note] = f"CVR {proposal['cvr']} saved (run {out['run_id']})."
            st.rerun()
        for error in out["errors"] or [{"message": out.get("stopped") or "nothing was written"}]:
            st.error(error["message"])
