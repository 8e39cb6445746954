"""``ssm_agent.log``, ``ssm_agent.disk``, ``ssm_agent.config``: the agent's files.

The log is classified into causes (``checks/agentlog.py``); a cause that one of this run's own
checks also finds (``auth.ssm``, ``iam.credentials``, ``clock``, ``resolver.system``, ``reach.*``)
is named there, not blamed on the agent; hibernation with everything else in order is "stuck after
the cause was fixed: restart".
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from . import agentctx, agentlog
from . import agentfiles as af
from .causes import explain
from .model import Context, Finding, Outcome, Status, outcome

DISK_FULL_BYTES = 1024 * 1024  # below this the agent's next document or state file fails
DISK_FULL_INODES = 64
DISK_LOW_PERCENT = 5
DISK_LOW_BYTES = 256 * 1024 * 1024

# --- ssm_agent.log ---------------------------------------------------------------------------------

LOG_CAUSE = {"access_denied": "ssm_agent_log_access_denied", "expired_token": "ssm_agent_log_credentials",
             "no_credentials": "ssm_agent_log_credentials", "clock": "ssm_agent_log_clock",
             "no_space": "ssm_agent_log_no_space", "proxy": "ssm_agent_log_proxy", "tls": "ssm_agent_log_tls",
             "network": "ssm_agent_log_network"}
SYMPTOM = {"access_denied": "AccessDenied", "expired_token": "expired credentials", "clock": "signature time "
           "errors", "no_credentials": "no credentials", "no_space": "no space left", "proxy": "proxy errors",
           "tls": "certificate errors", "network": "connection errors", "hibernate": "hibernation"}
ORDER = ("no_space", "proxy", "tls", "access_denied", "no_credentials", "expired_token", "clock", "network")
POLICY_TEXT = {"vpc_endpoint_policy": "a VPC endpoint policy", "identity_policy": "the role's identity-based policy",
               "scp": "a service control policy", "permissions_boundary": "the role's permissions boundary",
               None: "the message does not name the policy"}


def run_log(ctx: Context) -> Outcome:
    start = time.monotonic()
    tails, reading = agentctx.log_reading(ctx.settings)
    running = bool(agentctx.pids(ctx))
    ev: Dict[str, Any] = {"files": reading.files, "current_run_since": reading.last_start,
                          "version": reading.version, "causes": {k: dict(v) for k, v in reading.hits.items()}, "hibernating": reading.hibernating}
    data = {"hibernating": reading.hibernating, "causes": sorted(reading.hits), "version": reading.version}
    if not any(t.exists for t in tails):
        what = f"no agent log in {ctx.settings.ssm_agent_log_dir}"
        if not running:
            return agentctx.not_running("ssm_agent.log", what, ev)
        return outcome(Finding("ssm_agent.log", Status.OK, f"not checked: {what}", evidence=ev,
                               duration_s=time.monotonic() - start), data=data)
    rotated = [f["path"] for f in reading.files if f.get("rotated")]
    unread = "; ".join(reading.unreadable + [f"{p}: rotated during the read (the old file was read)" for p in rotated])
    unread = f" (could not read all: {unread})" if unread else ""
    if not any(t.problem is None for t in tails):
        return outcome(Finding("ssm_agent.log", Status.OK, f"not checked: the agent's logs are not readable{unread}",
                               evidence=ev), data=data)
    kinds = [k for k in ORDER if k in reading.hits]
    hibernating = reading.hibernating and running  # a stopped agent hibernates no more
    if not kinds and not hibernating:
        return outcome(Finding("ssm_agent.log", Status.OK, "no errors in the agent's log since its last start" +
                               (f" ({reading.last_start})" if reading.last_start else "") + unread, evidence=ev,
                               duration_s=time.monotonic() - start), data=data)
    symptom = ", ".join(SYMPTOM[k] for k in kinds + (["hibernate"] if hibernating else []))
    connected = bool((ctx.data("ssm_agent") or {}).get("endpoint_connections"))
    # On the instance, no other check sees these; a full disk hurts even a connected agent.
    local = [k for k in kinds if k == "no_space" or (k in ("proxy", "tls") and not connected)]
    if local:
        return _log_finding(ev, data, Status.CRITICAL if running else Status.WARNING, local[0], reading, unread)
    if not running:  # the ssm_agent finding says so; what its last run logged is context, not a cause
        return outcome(Finding("ssm_agent.log", Status.OK, f"not checked: the SSM agent is not running (its last run "
                               f"logged {symptom}){unread}", evidence=ev), data=data)
    # Our own proof of the agent's path and acceptance comes first: a cause found there is THE cause,
    # and its finding carries the status.
    failing = agentctx.failing_paths(ctx, agentctx.accept_ids(ctx.settings))
    ev["failing_checks"] = failing
    if failing:
        return outcome(Finding("ssm_agent.log", Status.WARNING, f"the agent's log shows {symptom}; "
                               f"{', '.join(failing)} failed in this run too{unread}",
                               evidence=ev, **explain("ssm_agent_waits_for", symptom=symptom,
                                                      failing=", ".join(failing))), data=data)
    # "The service accepts this instance" is proven only by the signed call as the instance.
    accepted = ctx.ran("auth.ssm") and ctx.data("auth.ssm") is not None
    ev["service_accepts"] = accepted if ctx.ran("auth.ssm") else None
    if hibernating and not connected and (accepted or not kinds):
        line = reading.hits["hibernate"]["last"]
        summary = "the SSM agent is hibernating although " + (
            "this run finds its path, credentials and the service's answer in order" if accepted
            else "its log names no cause (not proven: the signed SSM call did not run)")
        return outcome(Finding("ssm_agent.log", Status.CRITICAL if accepted else Status.WARNING,
                               f"{summary} ({symptom}){unread}", evidence=ev,
                               **explain("ssm_agent_hibernating", line=line)), data=data)
    if connected:
        return outcome(Finding("ssm_agent.log", Status.OK, f"the agent's log shows {symptom} earlier in this run; it "
                               f"holds endpoint connections now{unread}", evidence=ev), data=data)
    return _log_finding(ev, data, Status.WARNING if accepted else Status.CRITICAL, kinds[0], reading, unread)


def _log_finding(ev: Dict[str, Any], data: Dict[str, Any], status: Status, kind: str, reading: agentlog.LogReading,
                 unread: str) -> Outcome:
    hit = reading.hits[kind]
    params: Dict[str, Any] = {"line": hit["last"]}
    if kind == "access_denied":
        params["policy"] = POLICY_TEXT[reading.policy_type()]
        data["policy_type"] = reading.policy_type()
    summary = f"the agent's log shows {SYMPTOM[kind]} ({hit['count']}x since its start, last {hit.get('at') or '?'})"
    return outcome(Finding("ssm_agent.log", status, summary + unread, evidence=ev, **explain(LOG_CAUSE[kind], **params)),
                   data=data)


# --- ssm_agent.disk --------------------------------------------------------------------------------

def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def run_disk(ctx: Context) -> Outcome:
    usage: List[Dict[str, Any]] = []
    missing: List[str] = []
    for path in (ctx.settings.ssm_agent_data_dir, ctx.settings.ssm_agent_log_dir):
        try:
            usage.append(af.disk_usage(path))
        except OSError as exc:
            missing.append(f"{path}: {af._one_line(exc)}")
    ev: Dict[str, Any] = {"filesystems": usage, "problems": missing}
    if not usage:
        if not agentctx.pids(ctx):
            return agentctx.not_running("ssm_agent.disk", "and its directories do not exist", ev)
        return outcome(Finding("ssm_agent.disk", Status.OK, "not checked: " + "; ".join(missing), evidence=ev),
                       data=ev)
    for u in usage:
        inodes_out = u["inodes"] > 0 and u["free_inodes"] < DISK_FULL_INODES  # tmpfs/btrfs may report 0 inodes
        if u["free_bytes"] < DISK_FULL_BYTES or inodes_out:
            return outcome(Finding("ssm_agent.disk", Status.CRITICAL, f"{u['path']} is full: {_size(u['free_bytes'])} "
                                   f"and {u['free_inodes']} inodes free", evidence=ev,
                                   **explain("ssm_agent_disk_full", path=u["path"], free=_size(u["free_bytes"]),
                                             inodes=u["free_inodes"])), data=ev)
    for u in usage:
        percent = 100 * u["free_bytes"] // max(1, u["size_bytes"])
        if percent < DISK_LOW_PERCENT and u["free_bytes"] < DISK_LOW_BYTES:
            return outcome(Finding("ssm_agent.disk", Status.WARNING, f"{u['path']}: only {_size(u['free_bytes'])} "
                                   f"free ({percent}%)", evidence=ev,
                                   **explain("ssm_agent_disk_low", path=u["path"], free=_size(u["free_bytes"]),
                                             percent=percent)), data=ev)
    text = "; ".join(f"{u['path']}: {_size(u['free_bytes'])}, {u['free_inodes']} inodes free" for u in usage)
    return outcome(Finding("ssm_agent.disk", Status.OK, text + (f" (not checked: {'; '.join(missing)})" if missing
                                                                  else ""), evidence=ev), data=ev)


# --- ssm_agent.config ------------------------------------------------------------------------------

def run_config(ctx: Context) -> Outcome:
    path = ctx.settings.ssm_agent_config_file
    overrides, problem = af.agent_json_overrides(path)
    ev: Dict[str, Any] = {"file": path, "overrides": overrides or {}, "problem": problem}
    data = {"overrides": overrides or {}}
    if overrides is None:
        return outcome(Finding("ssm_agent.config", Status.OK, f"no {path}: the agent uses its defaults", evidence=ev),
                       data=data)
    if problem:
        return outcome(Finding("ssm_agent.config", Status.WARNING, f"the agent's config is unusable: {problem}",
                               evidence=ev, **explain("ssm_agent_config_invalid", file=path, error=problem)), data=data)
    region = ctx.facts.region
    for key in ("Agent.Region", "Mgs.Region"):
        value = overrides.get(key)
        if value and region and value != region:
            return outcome(Finding("ssm_agent.config", Status.CRITICAL, f"{path} sets {key} = {value}; the instance "
                                   f"is in {region}", evidence=ev,
                                   **explain("ssm_agent_config_region", file=path, key=key, value=value,
                                             region=region)), data=data)
    defaults = set(agentctx.agent_hosts(ctx))
    endpoints = {k: v for k, v in overrides.items() if k.endswith(".Endpoint") and k.split(".")[0] in ("Ssm", "Mgs", "Mds")
                 and _host(v) not in defaults}
    if endpoints:
        text = ", ".join(f"{k} = {v}" for k, v in sorted(endpoints.items()))
        return outcome(Finding("ssm_agent.config", Status.WARNING, f"{path} overrides {text}", evidence=ev,
                               **explain("ssm_agent_config_endpoint", file=path, overrides=text)), data=data)
    summary = f"{path}: no region or endpoint override" if not overrides else \
        f"{path}: overrides match this region ({', '.join(sorted(overrides))})"
    return outcome(Finding("ssm_agent.config", Status.OK, summary, evidence=ev), data=data)


def _host(value: str) -> str:
    host = value.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host.lower().rstrip(".")
