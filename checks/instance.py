"""The instance itself: ``instance.public_ip``, ``instance.profile``, ``ssm_agent``.

From IMDS facts (``public-ipv4`` is 404 when the instance has none; ``iam/info`` is 404 when no
instance profile is attached) and from the process table (``procnet``). None of these touches the
network, so they are fast and independent of the DNS checks.
"""
from __future__ import annotations

import ipaddress
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import procnet
from .causes import explain
from .model import Check, Context, Facts, Finding, MissingFact, Outcome, Settings, Status, outcome

# /proc/<pid>/comm is cut to 15 characters: "amazon-ssm-agent" shows as "amazon-ssm-agen",
# "ssm-agent-worker" as "ssm-agent-worke".
AGENT_NAMES = ("amazon-ssm-agent", "ssm-agent-worker")
AGENT_ENDPOINTS = ("ssm", "ec2messages", "ssmmessages")  # what the agent connects to (AWS-FACTS.md)
HTTPS_PORT = 443
# Without VPC CIDRs: RFC 1918 and RFC 6598 (not ipaddress.is_private, which counts documentation
# ranges such as 198.51.100.0/24 as private).
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                   "100.64.0.0/10", "fc00::/7"))


def _known(facts: Facts, name: str) -> bool:
    """A fact is trustworthy when IMDS answered or the config set it; None then means "none"."""
    return facts.imds_state == "ok" or name in facts.sources


# --- instance.public_ip / instance.profile ------------------------------------------------------

def run_public_ip(ctx: Context) -> Outcome:
    facts = ctx.facts
    if not _known(facts, "public_ipv4"):
        raise MissingFact("public_ipv4")
    ev = {"public_ipv4": facts.public_ipv4, "source": facts.sources.get("public_ipv4", "imds")}
    if facts.public_ipv4:
        return outcome(Finding("instance.public_ip", Status.WARNING,
                               f"the instance has a public IPv4 address {facts.public_ipv4}", evidence=ev,
                               **explain("public_ip_assigned", public_ipv4=facts.public_ipv4,
                                         subnet_id=facts.subnet_id)), data=ev)
    return outcome(Finding("instance.public_ip", Status.OK, "no public IPv4 address", evidence=ev), data=ev)


def run_profile(ctx: Context) -> Outcome:
    facts = ctx.facts
    if not _known(facts, "instance_profile_arn"):
        raise MissingFact("instance_profile_arn")
    arn = facts.instance_profile_arn
    ev = {"instance_profile_arn": arn, "source": facts.sources.get("instance_profile_arn", "imds")}
    if arn:
        return outcome(Finding("instance.profile", Status.OK, f"instance profile {arn}", evidence=ev), data=ev)
    # No data: without credentials nothing that signs AWS calls can work.
    return outcome(Finding("instance.profile", Status.CRITICAL, "no instance profile attached (IMDS iam/info: 404)",
                           evidence=ev, **explain("no_instance_profile", instance_id=facts.instance_id)))


# --- ssm_agent ------------------------------------------------------------------------------------

def is_agent(name: str, cmdline: Sequence[str]) -> bool:
    """The process name (maybe cut to 15 chars) or argv[0]'s basename is the agent's.
    Arguments are not looked at: `systemctl status amazon-ssm-agent` is not the agent."""
    argv0 = os.path.basename(cmdline[0]) if cmdline else ""
    for agent in AGENT_NAMES:
        if name == agent or name == agent[:procnet.COMM_LEN] or argv0 == agent:
            return True
    return False


def find_agents() -> List[procnet.Proc]:
    """Agent processes that share our network namespace: an agent in another namespace (a
    container, another instance's stand-in) holds its connections there, not on this host's path."""
    own_ns = procnet.net_namespace("self")
    found = []
    for proc in procnet.processes():
        if is_agent(proc.name, proc.argv):
            ns = procnet.net_namespace(proc.pid)
            if own_ns is None or ns is None or ns == own_ns:
                found.append(proc)
    return found


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
    agents = find_agents()
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
        return outcome(Finding("ssm_agent", Status.OK, f"SSM agent runs (pid {pids}) with TCP 443 to "
                               f"{', '.join(sorted(set(private)))}", evidence=ev, duration_s=duration), data=ev)
    if hidden and len(hidden) == len(agents):
        # Not root: the agent's sockets aren't visible, so "not connected" can't be claimed.
        return outcome(Finding("ssm_agent", Status.OK, f"SSM agent runs (pid {pids}); its connections are not "
                               "visible without root", evidence=ev, duration_s=duration), data=ev)
    summary = f"SSM agent runs (pid {pids}) but holds no TCP 443 connection to an address in the VPC"
    if other_443:
        summary += f" (443 to {', '.join(sorted(set(other_443)))} instead)"
    # A restart only helps if the endpoints accept connections: when our own probes of them failed,
    # that failure is the reason, and the agent reconnects by itself once it is fixed.
    unreachable = [c for c in _agent_reach_checks(ctx.settings) if ctx.ran(c) and ctx.data(c) is None]
    if unreachable:
        ev["endpoints_failing"] = unreachable
        return outcome(Finding("ssm_agent", Status.WARNING, summary, evidence=ev, duration_s=duration,
                               **explain("ssm_agent_endpoints_failing", failing=", ".join(unreachable))), data=ev)
    return outcome(Finding("ssm_agent", Status.WARNING, summary, evidence=ev, duration_s=duration,
                           **explain("ssm_agent_not_connected", expected=expected)), data=ev)


def _agent_reach_checks(settings: Settings) -> Tuple[str, ...]:
    """The endpoint probes whose outcome explains an unconnected agent (run before it, see wants)."""
    return tuple(f"reach.{s}" for s in AGENT_ENDPOINTS if s in settings.services)


def _agent_not_checked(ctx: Context) -> Outcome:
    return outcome(Finding("ssm_agent", Status.OK, "not checked (check_ssm_agent: false)"), data={})


def checks(settings: Settings) -> List[Check]:
    return [
        Check("instance.public_ip", run_public_ip, timeout_s=1.0),
        Check("instance.profile", run_profile, timeout_s=1.0),
        Check("ssm_agent", run_ssm_agent if settings.check_ssm_agent else _agent_not_checked, timeout_s=5.0,
              wants=_agent_reach_checks(settings) if settings.check_ssm_agent else ()),
    ]
