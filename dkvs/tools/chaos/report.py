"""The chaos report as text (the JSON form is the report document itself).

:func:`format_report` reads the document :func:`~.runner.run_chaos` returns and prints the
figures in the order one checks them: what ran, whether anything was lost, whether the
history is linearizable, whether the cluster converged, and how long it was unavailable.
"""

from __future__ import annotations

__all__ = ["format_report"]

_OUTCOME_ROWS = ("get", "put acks=majority", "put acks=1", "delete", "cas", "cas-delete", "txn", "lease-put",
                 "total")


def format_report(doc: dict) -> str:
    lines = [_headline(doc), ""]
    lines += _operations(doc)
    lines += [""] + _faults(doc)
    lines += [""] + _safety(doc)
    lines += _workload(doc)
    lines += [""] + _convergence(doc)
    lines += [""] + _unavailability(doc)
    if doc.get("history"):
        lines.append(f"history saved to {doc['history']}")
    lines.append("")
    lines.append(_verdict_line(doc))
    return "\n".join(lines)


def _headline(doc: dict) -> str:
    c = doc["config"]
    return (f"dkvs chaos: {c['nodes']} nodes (fsync {c['fsync']}), {c['clients']} clients, {c['keys']} keys, "
            f"seed {c['seed']}, {doc['faults']['injected']} fault events every {c['interval_s']:g} s; "
            f"clients ran {doc['client_seconds']} s, whole run {doc.get('duration_s', '?')} s")


def _operations(doc: dict) -> list[str]:
    lines = [f"{'operations':<20}{'ok':>8}{'fail':>8}{'info':>8}"]
    for row in _OUTCOME_ROWS:
        counts = doc["operations"].get(row)
        if counts:
            lines.append(f"  {row:<18}{counts['ok']:>8}{counts['fail']:>8}{counts['info']:>8}")
    lines.append(f"  ({doc['ok_per_second']} successful operations per second)")
    for outcome, reasons in doc.get("failure_reasons", {}).items():
        if reasons:
            lines.append(f"  most frequent {outcome}: " + ", ".join(f"{why} x{n}" for why, n in reasons.items()))
    return lines


def _faults(doc: dict) -> list[str]:
    faults = doc["faults"]
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(faults["by_kind"].items()))
    lines = [f"faults: {faults['injected']} of {faults['planned']} events ({kinds}); {faults['restarts']} restarts"]
    if faults["heal_problems"]:
        lines.append(f"  problems while healing: {faults['heal_problems'][:5]}")
    return lines


def _safety(doc: dict) -> list[str]:
    acks1 = doc["acks1"]
    checker = doc["checker"]
    lines = [f"lost acks=majority writes: {doc['lost_majority_writes']} "
             f"(of {doc['majority_writes_acknowledged']} acknowledged)"]
    for example in doc["lost_majority_examples"][:5]:
        lines.append(f"  LOST {example}")
    lines.append(f"acks=1 writes (allowed to be lost): {acks1['acknowledged']} acknowledged, "
                 f"{acks1['unobserved']} never observed, {acks1['lost']} lost (not superseded), "
                 f"{acks1['rolled_back']} in rollback files")
    lines.append(f"rollback files: {doc['rollback']['entries']} entries in {doc['rollback']['files']} files")
    detail = checker.get("reason", "")
    lines.append(f"linearizability (dkvs.check): {checker['verdict'].upper()} — {detail} "
                 f"({checker.get('seconds', 0)} s)")
    ops = checker.get("counterexample", [])[:20]
    origin = min((op["invoke"] for op in ops), default=0)
    for op in ops:
        lines.append("  " + _format_operation(op, origin))
    return lines


def _workload(doc: dict) -> list[str]:
    """Leases (when in the mix) and the lock verdict (``--workload lock``)."""
    lines = []
    leases = doc.get("leases") or {}
    if leases:
        counts = ", ".join(f"{name} {leases.get(name, 0)}" for name in
                           ("granted", "renewed", "abandoned", "expired_on_keepalive", "expired_on_put"))
        state = ("every leased key expired" if leases.get("all_expired")
                 else f"STILL PRESENT: {leases.get('left')}")
        lines.append(f"leases: {counts}; after the run: {state} within {leases.get('seconds')} s")
    lock = doc.get("lock") or {}
    if lock:
        reasons = ", ".join(f"{name} x{count}" for name, count in lock.get("failed_acquisition_reasons", {}).items())
        lines.append(f"lock: {lock['acquisitions']} acquisitions ({lock['failed_acquisitions']} attempts failed"
                     f"{': ' + reasons if reasons else ''}), "
                     f"{lock['distinct_tokens']} distinct tokens, highest {lock['highest_token']}, "
                     f"resource ends at {lock['final_token']}")
        lines.append(f"  fenced writes: {lock['accepted_writes']} accepted in increasing token order, "
                     f"{lock['rejected_stale_writes']} stale ones rejected, {lock['unknown_writes']} unknown; "
                     f"{lock['overlapping_beliefs']} overlapping beliefs, {lock['holder_pauses']} holder pauses, "
                     f"{lock['lost_leases_noticed']} lost leases noticed")
        lines += [f"  VIOLATION {text}" for text in lock["violations"][:10]]
    return [""] + lines if lines else []


def _format_operation(op: dict, origin: int) -> str:
    """``process 337 get k2 -> 'c2-149'   +0.0 .. +10.4 ms`` (times from the first invoke)."""
    if op.get("what") is not None and op["f"] not in ("get", "put", "delete"):
        what = f"{op['f']} {op['what']}"
    elif op.get("what") is not None and ("if_seq" in op["what"] or "409" in op["what"] or "seq" in op["what"]):
        what = f"{op['f']} {op['key']} {op['what']}"
    elif op["f"] == "get":
        what = f"get {op['key']} -> {op['value']!r}"
    elif op["f"] == "put":
        what = f"put {op['key']} {op['value']!r}"
    else:
        what = f"delete {op['key']}" + ("" if op.get("found") is None else f" found={str(op['found']).lower()}")
    complete = "unknown (info)" if op["complete"] is None else f"+{(op['complete'] - origin) / 1e6:.1f} ms"
    return f"process {op['process']:<5} {what:<32} +{(op['invoke'] - origin) / 1e6:.1f} .. {complete}"


def _convergence(doc: dict) -> list[str]:
    conv = doc["convergence"]
    if conv["converged"]:
        first = conv["nodes"][0]
        masters = [n["id"] for n in conv["nodes"] if n.get("role") == "master"]
        lines = [f"convergence: yes, after {conv['seconds']} s — last_seq {first['last_seq']} and equal data on "
                 f"all {len(conv['nodes'])} nodes, master {masters[0]} in epoch {first['epoch']}"]
    else:
        lines = [f"convergence: NO after {conv['seconds']} s — {conv['reason']}"]
        lines += [f"  {node}" for node in conv["nodes"]]
    return lines


def _unavailability(doc: dict) -> list[str]:
    unavailable = doc["unavailability"]
    lines = [f"unavailability: longest stretch without a successful operation {unavailable['longest_gap_s']} s "
             f"(at t={unavailable['longest_gap_at_s']} s)",
             f"  {'per fault kind':<18}{'events':>8}{'max s':>8}{'median s':>10}"]
    for kind, row in unavailable["by_fault"].items():
        lines.append(f"  {kind:<18}{row['events']:>8}{row['max_gap_s']:>8}{row['median_gap_s']:>10}")
    return lines


def _verdict_line(doc: dict) -> str:
    if doc["problems"]:
        return "RESULT: FAIL — " + "; ".join(doc["problems"])
    if doc["exit_code"]:
        return "RESULT: INCONCLUSIVE — " + "; ".join(doc["notes"] or ["see above"])
    notes = f" ({'; '.join(doc['notes'])})" if doc["notes"] else ""
    return "RESULT: PASS" + notes
