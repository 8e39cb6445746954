"""What the ssm_agent.* checks share: the agent's pids from the ``ssm_agent`` check, the checks that
prove the agent's path and its acceptance (wanted, so they ran first when registered), and when one
of them failed."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import agentlog, procnet
from .model import Context, Finding, Outcome, Settings, Status, outcome

AGENT_ENDPOINTS = ("ssm", "ec2messages", "ssmmessages")  # what the agent connects to (AWS-FACTS.md)
LOG_FILES = ("amazon-ssm-agent.log", "errors.log", "hibernate.log")
# /proc/<pid>/comm is cut to 15 characters: "amazon-ssm-agent" shows as "amazon-ssm-agen",
# "ssm-agent-worker" as "ssm-agent-worke".
AGENT_NAMES = ("amazon-ssm-agent", "ssm-agent-worker")


def failing_paths(ctx: Context, ids: Sequence[str]) -> List[str]:
    """The wanted checks that failed in this run: ran and produced no data; for resolver.system,
    an answer that leads programs away from the endpoints (``misled_hosts``). A mere difference
    (an /etc/hosts pin to a working ENI, load-balanced public answers) is not a failing path."""
    out = [c for c in ids if ctx.ran(c) and ctx.data(c) is None]
    system = ctx.data("resolver.system") if "resolver.system" in ids else None
    if isinstance(system, dict) and system.get("misled_hosts"):
        out.append("resolver.system")
    return out


def reach_ids(settings: Settings) -> Tuple[str, ...]:
    return tuple(f"reach.{s}" for s in AGENT_ENDPOINTS if s in settings.services)


def path_ids(settings: Settings) -> Tuple[str, ...]:
    """What proves the agent's path and its acceptance (absent ids are skipped by the runner)."""
    return ("resolver.system",) + reach_ids(settings)


ACCEPT_IDS = ("instance.profile", "iam.credentials", "clock", "auth.ssm")  # does AWS accept this instance


def accept_ids(settings: Settings) -> Tuple[str, ...]:
    return ACCEPT_IDS + path_ids(settings)


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


def pids(ctx: Context) -> List[int]:
    """The agent's pids from the ssm_agent check (none when it is not running); when that check was
    not run (``--only ssm_agent.log``), from the process table."""
    if not ctx.ran("ssm_agent"):
        return [p.pid for p in find_agents()]
    data = ctx.data("ssm_agent")
    return list(data.get("pids", [])) if isinstance(data, dict) else []


def not_running(fid: str, what: str, evidence: Optional[Dict[str, Any]] = None) -> Outcome:
    ev = dict(evidence or {})
    return outcome(Finding(fid, Status.OK, f"not checked: the SSM agent is not running ({what})", evidence=ev),
                   data=ev)


def agent_hosts(ctx: Context) -> List[str]:
    region = ctx.facts.region or "us-east-1"
    domain = ctx.facts.domain or "amazonaws.com"
    return [f"{s}.{region}.{domain}" for s in AGENT_ENDPOINTS if s in ctx.settings.services]


def first(env: Dict[str, str], *names: str) -> Optional[str]:
    return next((env[n] for n in names if env.get(n)), None)


def log_tails(settings: Settings) -> List[agentlog.Tail]:
    return [agentlog.read_tail(os.path.join(settings.ssm_agent_log_dir, name)) for name in LOG_FILES]


_reading_cache: Dict[str, Any] = {}  # the daemon's last reading, while no log file changed


def log_reading(settings: Settings) -> Tuple[List[agentlog.Tail], agentlog.LogReading]:
    """The tails (without their text) and what they say; unchanged files are not read again, so the
    daemon does not re-read megabytes of an idle agent's logs every cycle."""
    key = []
    for name in LOG_FILES:
        try:
            st = os.lstat(os.path.join(settings.ssm_agent_log_dir, name))
            key.append((name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode))
        except OSError as exc:
            key.append((name, exc.errno))
    if _reading_cache.get("key") == key:
        return _reading_cache["tails"], _reading_cache["reading"]
    tails = log_tails(settings)
    reading = agentlog.classify(tails)
    tails = [replace(t, text="") for t in tails]
    _reading_cache.update(key=key, tails=tails, reading=reading)
    return tails, reading
