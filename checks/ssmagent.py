"""The SSM agent from its own evidence: ``ssm_agent`` (runs, holds endpoint connections) and
``ssm_agent.user``, ``.version``, ``.proxy`` here; ``.log``, ``.disk``, ``.config`` in
``checks/agentstate.py``.

The agent is blamed only when the paths and the service accept this instance: the checks that
prove those (``auth.ssm``, ``iam.credentials``, ``clock``, ``resolver.system``, ``reach.*``) are
*wanted*, and when one of them failed (ran, no data) the finding points there instead of advising a
restart. Evidence readers live in ``checks/agentfiles.py`` and ``checks/agentlog.py``. Without the agent process and without
its files (no agent installed) nothing here alarms: the ``ssm_agent`` finding says it is not running.
"""
from __future__ import annotations

import ipaddress
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import agentctx, agentstate, procnet
from . import agentfiles as af
from .causes import explain
from .model import Check, Context, Facts, Finding, MissingFact, Outcome, Settings, Status, outcome

AGENT_ENDPOINTS = agentctx.AGENT_ENDPOINTS
AGENT_NAMES = agentctx.AGENT_NAMES
is_agent, find_agents = agentctx.is_agent, agentctx.find_agents  # the process table, shared
HTTPS_PORT = 443
IMDS_IP = "169.254.169.254"
# RELEASENOTES.md of github:aws/amazon-ssm-agent: 2.3.68.0 "Enables the Session Manager capability";
# 3.1.821.0 receives Run Command through ssmmessages (MGS) when connected, "fallback to MDS"
# (ec2messages) otherwise; 3.3.40.0 switches ec2messages off once ssmmessages connected.
SESSION_MANAGER_MIN = "2.3.68.0"
RUN_COMMAND_VIA_SSMMESSAGES = "3.1.821.0"
EC2MESSAGES_OFF_WHEN_MGS = "3.3.40.0"
EC2MESSAGES_IDS = ("dns.ec2messages", "reach.ec2messages")  # what an older agent's Run Command needs
# Without VPC CIDRs: RFC 1918 and RFC 6598 (not ipaddress.is_private, which counts documentation
# ranges such as 198.51.100.0/24 as private).
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                   "100.64.0.0/10", "fc00::/7"))


# --- ssm_agent: the process and its connections --------------------------------------------------

def _vpc_networks(facts: Facts) -> Tuple[Tuple[Any, ...], bool]:
    try:
        return facts.networks(), True
    except MissingFact:
        return _PRIVATE, False


def _inside(ip: str, networks: Sequence[Any]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped:  # ::ffff:10.0.1.101 on dual-stack sockets
        addr = addr.ipv4_mapped
    return any(addr.version == n.version and addr in n for n in networks)


def run_ssm_agent(ctx: Context) -> Outcome:
    start = time.monotonic()
    agents = agentctx.find_agents()
    expected = f"TCP 443 to the {'/'.join(ctx.settings.services)} ENIs"
    if not agents:
        return outcome(Finding("ssm_agent", Status.CRITICAL, "the SSM agent (amazon-ssm-agent) is not running",
                               evidence={"processes": []}, duration_s=time.monotonic() - start,
                               **explain("ssm_agent_not_running")))
    nets, from_facts = _vpc_networks(ctx.facts)
    processes: List[Dict[str, Any]] = []
    private: List[str] = []
    other_443: List[str] = []
    hidden = []
    connections = procnet.Connections()
    for proc in agents:
        try:
            conns, visible = connections.remotes(proc.pid), True
        except PermissionError:
            conns, visible = [], False
            hidden.append(proc.pid)
        except ProcessLookupError:  # exited since the scan
            conns, visible = [], True
        remotes = []
        for ip, port in conns:
            if port != HTTPS_PORT:
                continue
            remote = f"{ip}:{port}"
            remotes.append(remote)
            (private if _inside(ip, nets) else other_443).append(remote)
        processes.append({"pid": proc.pid, "name": proc.name, "connections_443": remotes, "visible": visible})
    ev = {"processes": processes, "pids": [p["pid"] for p in processes], "endpoint_connections": private,
          "other_443_connections": other_443,
          "networks": [str(n) for n in nets], "networks_from": "vpc_cidrs" if from_facts else "private ranges",
          "connections_from": connections.source}
    pids = ", ".join(str(p["pid"]) for p in processes)
    duration = time.monotonic() - start
    if private:
        held = f"SSM agent runs (pid {pids}) with TCP 443 to {', '.join(sorted(set(private)))}"
        # Connections outlive what made them: with the path failing now, the agent would not get back
        # once they drop. OK would contradict the failing finding (issue 14: no OK whose premise failed).
        unreachable = agentctx.failing_paths(ctx, agentctx.path_ids(ctx.settings))
        if unreachable:
            ev["endpoints_failing"] = unreachable
            return outcome(Finding("ssm_agent", Status.WARNING, f"{held}, but new connections would fail "
                                   f"({', '.join(unreachable)} failed)", evidence=ev, duration_s=duration,
                                   **explain("ssm_agent_connected_path_failing", failing=", ".join(unreachable))),
                           data=ev)
        return outcome(Finding("ssm_agent", Status.OK, held, evidence=ev, duration_s=duration), data=ev)
    if hidden and len(hidden) == len(agents):
        # Not root: the agent's sockets aren't visible, so "not connected" can't be claimed.
        return outcome(Finding("ssm_agent", Status.OK, f"SSM agent runs (pid {pids}); not checked: its "
                               "connections are not visible without root", evidence=ev, duration_s=duration), data=ev)
    summary = f"SSM agent runs (pid {pids}) but holds no TCP 443 connection to an address in the VPC"
    if other_443:
        summary += f" (443 to {', '.join(sorted(set(other_443)))} instead)"
    # A restart only helps if the agent's path works: when our own probes of it failed (the endpoints,
    # or what the system resolver answers for their names), that is the reason, and the agent
    # reconnects by itself once it is fixed.
    unreachable = agentctx.failing_paths(ctx, agentctx.path_ids(ctx.settings))
    refused = agentctx.failing_paths(ctx, agentctx.ACCEPT_IDS)
    proxied = _proxied_hosts(ctx, agents[0].pid)
    if refused and not unreachable:  # AWS does not accept the instance: the agent backs off, not stuck
        ev["not_accepted"] = refused
        return outcome(Finding("ssm_agent", Status.WARNING, summary, evidence=ev, duration_s=duration,
                               **explain("ssm_agent_not_accepted", failing=", ".join(refused))), data=ev)
    if proxied and not unreachable:  # it does not take the path we proved: its proxy is the suspect
        hosts, proxy = proxied
        ev["proxy"] = proxy
        return outcome(Finding("ssm_agent", Status.WARNING, summary + f"; it sends {', '.join(hosts)} through the "
                               f"proxy {proxy}", evidence=ev, duration_s=duration,
                               **explain("ssm_agent_proxy_endpoints", hosts=", ".join(hosts), proxy=proxy,
                                         source=f"/proc/{agents[0].pid}/environ")), data=ev)
    if unreachable:
        ev["endpoints_failing"] = unreachable
        return outcome(Finding("ssm_agent", Status.WARNING, summary, evidence=ev, duration_s=duration,
                               **explain("ssm_agent_endpoints_failing", failing=", ".join(unreachable))), data=ev)
    return outcome(Finding("ssm_agent", Status.WARNING, summary, evidence=ev, duration_s=duration,
                           **explain("ssm_agent_not_connected", expected=expected)), data=ev)


def _proxied_hosts(ctx: Context, pid: int) -> Optional[Tuple[List[str], str]]:
    """(SSM hosts the agent sends through a proxy, that proxy), from its environment; None if none."""
    try:
        env = af.process_proxy_env(pid)
    except OSError:
        return None
    proxy = agentctx.first(env, "HTTPS_PROXY", "https_proxy")
    if not proxy:
        return None
    no_proxy = agentctx.first(env, "NO_PROXY", "no_proxy") or ""
    hosts = [h for h in agentctx.agent_hosts(ctx) if not af.no_proxy_covers(no_proxy, h)]
    return (hosts, proxy) if hosts else None


def _agent_not_checked(ctx: Context) -> Outcome:
    return outcome(Finding("ssm_agent", Status.OK, "not checked (check_ssm_agent: false)"), data={})


# --- ssm_agent.user --------------------------------------------------------------------------------

def run_user(ctx: Context) -> Outcome:
    pids = agentctx.pids(ctx)
    if not pids:
        return agentctx.not_running("ssm_agent.user", "no process to look at")
    users: List[Dict[str, Any]] = []
    problems: List[str] = []
    for pid in pids:
        try:
            real, effective = af.process_uid(pid)
        except (OSError, ValueError) as exc:
            problems.append(f"pid {pid}: {af._one_line(exc)}")
            continue
        users.append({"pid": pid, "uid": effective, "real_uid": real, "user": af.user_name(effective)})
    ev: Dict[str, Any] = {"processes": users, "problems": problems}
    not_root = [u for u in users if u["uid"] != 0 or u["real_uid"] != 0]
    if not_root:
        u = not_root[0]
        return outcome(Finding("ssm_agent.user", Status.CRITICAL, f"the SSM agent (pid {u['pid']}) runs as "
                               f"{u['user']} (uid {u['uid']}), not root", evidence=ev,
                               **explain("ssm_agent_not_root", pid=u["pid"], user=u["user"], uid=u["uid"])),
                       data={"root": False, **ev})
    if not users:
        return outcome(Finding("ssm_agent.user", Status.OK, "not checked: " + "; ".join(problems), evidence=ev),
                       data={"root": None, **ev})
    return outcome(Finding("ssm_agent.user", Status.OK, "the SSM agent runs as root", evidence=ev),
                   data={"root": True, **ev})


# --- ssm_agent.version -----------------------------------------------------------------------------

def capabilities(version: str) -> Dict[str, Any]:
    v = af.version_tuple(version)
    return {"version": version,
            "session_manager": v >= af.version_tuple(SESSION_MANAGER_MIN),
            "run_command_via_ssmmessages": v >= af.version_tuple(RUN_COMMAND_VIA_SSMMESSAGES),
            "ec2messages_off_when_ssmmessages": v >= af.version_tuple(EC2MESSAGES_OFF_WHEN_MGS)}


def run_version(ctx: Context) -> Outcome:
    probe = af.run_version(ctx.settings.ssm_agent_binaries, timeout_s=min(af.VERSION_TIMEOUT_S, ctx.budget(2.0)))
    ev: Dict[str, Any] = {"binary": probe.binary, "problems": list(probe.problems), "source": "binary"}
    version = probe.version
    if version is None:  # fallback: the line the agent logs at start
        reading = agentctx.log_reading(ctx.settings)[1]
        version = reading.version
        ev["source"] = "log" if version else None
    running = bool(agentctx.pids(ctx))
    if version is None:
        if not running and not probe.problems:
            return agentctx.not_running("ssm_agent.version", "and no agent binary was found", ev)
        why = "; ".join(probe.problems) or f"no agent binary in {', '.join(ctx.settings.ssm_agent_binaries)}"
        return outcome(Finding("ssm_agent.version", Status.WARNING if probe.problems else Status.OK,
                               f"not checked: the agent's version is unknown ({why}; no start line in its log)",
                               evidence=ev), data={"version": None, **ev})
    caps = capabilities(version)
    ev.update(caps)
    if not caps["session_manager"]:
        return outcome(Finding("ssm_agent.version", Status.CRITICAL,
                               f"SSM agent {version} is too old for Session Manager (needs {SESSION_MANAGER_MIN})",
                               evidence=ev, **explain("ssm_agent_too_old", version=version, minimum=SESSION_MANAGER_MIN,
                                                      feature="Session Manager")), data=dict(ev))
    channel = ("Run Command through ssmmessages, ec2messages as fallback" if caps["run_command_via_ssmmessages"]
               else "Run Command through ec2messages only")
    failing = agentctx.failing_paths(ctx, EC2MESSAGES_IDS)
    if failing and not caps["run_command_via_ssmmessages"]:
        return outcome(Finding("ssm_agent.version", Status.CRITICAL, f"SSM agent {version}: {channel}, and "
                               f"{', '.join(failing)} fails", evidence=ev,
                               **explain("ssm_agent_needs_ec2messages", version=version, failing=", ".join(failing))),
                       data=dict(ev))
    return outcome(Finding("ssm_agent.version", Status.OK, f"SSM agent {version} (from its {ev['source']}): Session "
                           f"Manager supported; {channel}", evidence=ev), data=dict(ev))


# --- ssm_agent.proxy -------------------------------------------------------------------------------

def run_proxy(ctx: Context) -> Outcome:
    dropins, files, problems = af.dropin_proxy_env(ctx.settings.ssm_agent_dropin_dirs)
    env: Dict[str, str] = {}
    env_source = None
    pids = agentctx.pids(ctx)
    for pid in pids[:1]:  # the main process; its worker inherits the same environment
        try:
            env, env_source = af.process_proxy_env(pid), f"/proc/{pid}/environ"
        except OSError as exc:
            problems.append(f"/proc/{pid}/environ: {af._one_line(exc)}")
    # What the running agent uses is its environment; the drop-ins are what it gets at the next start
    # (so a proxy only there matters too: a restart would bring it in).
    if env_source and (_has_proxy(env) or not _has_proxy(dropins)):
        effective, source = env, env_source
    else:
        effective, source = dropins, "the unit's drop-ins" + (" (not yet in the running agent)" if env_source else "")
    ev: Dict[str, Any] = {"environment": env, "environment_from": env_source, "dropins": dropins,
                          "dropin_files": files, "problems": problems}
    https = agentctx.first(effective, "HTTPS_PROXY", "https_proxy")
    http = agentctx.first(effective, "HTTP_PROXY", "http_proxy")
    no_proxy = agentctx.first(effective, "NO_PROXY", "no_proxy") or ""
    data = {"proxy": https or http, "no_proxy": no_proxy, **ev}
    if not (https or http):
        seen = " and ".join(x for x in (env_source, f"{len(files)} drop-in(s)" if files else None) if x)
        if not seen:
            summary = ("not checked: " + "; ".join(problems)) if problems else (
                "no proxy in the agent's unit drop-ins" + ("" if pids else " (the agent is not running)"))
        else:
            summary = f"no proxy in {seen}" + (f" (not read: {'; '.join(problems)})" if problems else "")
        return outcome(Finding("ssm_agent.proxy", Status.OK, summary, evidence=ev), data=data)
    proxy = https or http
    hosts = [h for h in agentctx.agent_hosts(ctx) if not af.no_proxy_covers(no_proxy, h)]
    if http and not af.no_proxy_covers(no_proxy, IMDS_IP):
        return outcome(Finding("ssm_agent.proxy", Status.CRITICAL, f"the SSM agent uses the proxy {http} "
                               f"(from {source}) and no_proxy {no_proxy or '(unset)'} does not exempt {IMDS_IP}",
                               evidence=ev, **explain("ssm_agent_proxy_imds", proxy=http, source=source)), data=data)
    if https and hosts:
        return outcome(Finding("ssm_agent.proxy", Status.WARNING, f"the SSM agent sends {', '.join(hosts)} through "
                               f"the proxy {https} (from {source})", evidence=ev,
                               **explain("ssm_agent_proxy_endpoints", hosts=", ".join(hosts), proxy=https,
                                         source=source)), data=data)
    return outcome(Finding("ssm_agent.proxy", Status.OK, f"the SSM agent has the proxy {proxy} (from {source}); "
                           "no_proxy exempts IMDS and the SSM endpoints", evidence=ev), data=data)


def _has_proxy(env: Dict[str, str]) -> bool:
    return bool(agentctx.first(env, "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))


# --- registry --------------------------------------------------------------------------------------

def _failed_without_data(run: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
    """The contract's "failed" is "no data": a CRITICAL aspect of the agent gives none (its evidence
    keeps the details)."""
    def wrapped(ctx: Context) -> Outcome:
        out = run(ctx)
        return Outcome(out.findings, None) if out.findings[0].status == Status.CRITICAL else out
    return wrapped


def checks(settings: Settings) -> List[Check]:
    if not settings.check_ssm_agent:
        return [Check("ssm_agent", _agent_not_checked, timeout_s=1.0)]
    agent = ("ssm_agent",)
    return [
        Check("ssm_agent", run_ssm_agent, timeout_s=5.0, wants=agentctx.accept_ids(settings)),
        Check("ssm_agent.user", _failed_without_data(run_user), timeout_s=2.0, wants=agent),
        Check("ssm_agent.version", _failed_without_data(run_version), timeout_s=4.0, wants=agent + EC2MESSAGES_IDS),
        Check("ssm_agent.proxy", _failed_without_data(run_proxy), timeout_s=2.0, wants=agent),
        Check("ssm_agent.log", _failed_without_data(agentstate.run_log), timeout_s=4.0, wants=agent + agentctx.accept_ids(settings)),
        Check("ssm_agent.disk", _failed_without_data(agentstate.run_disk), timeout_s=2.0, wants=agent),
        Check("ssm_agent.config", _failed_without_data(agentstate.run_config), timeout_s=2.0),
    ]
