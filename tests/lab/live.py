"""Changing a running lab without rebuilding it: ``python -m tests.lab set [--name N] KEY=VALUE …``.

Only knobs whose whole effect lives in the VPC namespace can change at runtime:

* the router and security groups (``endpoint_sg_inbound_443``, ``instance_sg_outbound_443``,
  ``internet``, ``endpoints.<svc>.unreachable_azs``, ``vpc.enable_dns_support``): the nftables
  table is re-rendered and swapped in one transaction (firewall.replace). Security groups are
  stateful — connections open before the change keep working, as on AWS; unreachable AZs act like
  a NACL and stall open connections too;
* the resolver (``endpoints.<svc>.private_dns``, and the answers the knobs above imply): dnsmasq's
  configuration is rewritten and dnsmasq replaced, with a bounded readiness wait (dns.restart).

* the EC2 API (moto in the AWS layer): security groups, the default route, enableDnsSupport and the
  endpoints' Private DNS flag follow, as on AWS where a change shows in the API at once
  (tests/lab/aws/live_sync.py; ``set`` waits, bounded, until the layer has applied it).
  ``unreachable_azs`` is a fault without an API trace and changes nothing there. world.json keeps
  the world as built; ``world-live.json`` holds the one in force.

Each call applies its assignments on top of the earlier ones (kept in ``<state>/live.json``) and the
scenario file the lab was built from, and validates the result with the scenario's own rules, so an
error is one line naming the key: ``endpoints.ssm.unreachable_azs: AZ c is not in azs ['a', 'b']``.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from . import dns, firewall, lab as labmod
from .processes import REPO_ROOT, Launcher, LabError, wait_until
from .scenario import AZ_LETTERS, INTERNET_MODES, ScenarioError, parse
from .topology import Names
from .world import World, build

LIVE_FILE = "live.json"


# --- the knobs ------------------------------------------------------------------------------------

def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise LabError(f"{key}: expected true or false, got {value!r}")


def _internet(key: str, value: Any) -> str:
    if value not in INTERNET_MODES:
        raise LabError(f"{key}: expected one of {', '.join(INTERNET_MODES)}, got {value!r}")
    return value


def _azs(key: str, value: Any) -> List[str]:
    """``a,b`` (or a list); ``none`` or nothing for no AZ."""
    if isinstance(value, (list, tuple)):
        letters = [str(v) for v in value]
    elif isinstance(value, str):
        letters = [] if value.strip() in ("", "none") else [v.strip() for v in value.split(",")]
    else:
        letters = [repr(value)]
    if any(v not in AZ_LETTERS for v in letters) or len(letters) != len(dict.fromkeys(letters)):
        raise LabError(f"{key}: expected distinct AZ letters from {', '.join(AZ_LETTERS)} separated by commas "
                       f"(or none), got {value!r}")
    return sorted(letters)


@dataclass(frozen=True)
class Knob:
    pattern: str  # the key as documented
    regex: "re.Pattern[str]"
    value: Callable[[str, Any], Any]


_SVC = r"(?P<svc>[a-z0-9][a-z0-9.-]*?)"
KNOBS: Tuple[Knob, ...] = (
    Knob("endpoint_sg_inbound_443=true|false", re.compile(r"endpoint_sg_inbound_443"), _boolean),
    Knob("instance_sg_outbound_443=true|false", re.compile(r"instance_sg_outbound_443"), _boolean),
    Knob("internet=none|igw|nat", re.compile(r"internet"), _internet),
    Knob("vpc.enable_dns_support=true|false", re.compile(r"vpc\.enable_dns_support"), _boolean),
    Knob("endpoints.<svc>.unreachable_azs=a,b|none", re.compile(rf"endpoints\.{_SVC}\.unreachable_azs"), _azs),
    Knob("endpoints.<svc>.private_dns=true|false", re.compile(rf"endpoints\.{_SVC}\.private_dns"), _boolean),
)


def knob_help() -> str:
    return ", ".join(k.pattern for k in KNOBS)


def _parse_assignments(assignments: Union[Mapping[str, Any], Sequence[str]]) -> Dict[str, Any]:
    """``["k=v", …]`` or ``{k: v}`` → ``{k: typed value}``; later assignments of a key win."""
    pairs: List[Tuple[str, Any]] = []
    if isinstance(assignments, Mapping):
        pairs = list(assignments.items())
    else:
        for text in assignments:
            key, sep, value = str(text).partition("=")
            if not sep or not key.strip():
                raise LabError(f"{text!r}: expected KEY=VALUE (settable: {knob_help()})")
            pairs.append((key.strip(), value.strip()))
    if not pairs:
        raise LabError(f"nothing to set: give KEY=VALUE (settable: {knob_help()})")
    out: Dict[str, Any] = {}
    for key, value in pairs:
        knob = next((k for k in KNOBS if k.regex.fullmatch(key)), None)
        if knob is None:
            raise LabError(f"{key}: not a knob that can change at runtime (settable: {knob_help()}; "
                           f"anything else needs a new lab: python -m tests.lab up)")
        out[key] = knob.value(key, value)
    return out


# --- the scenario in force --------------------------------------------------------------------------

def _lab_source(names: Names) -> Tuple[Dict[str, Any], str, Path]:
    """The raw YAML of the scenario file the lab was built from."""
    try:
        info = json.loads((names.state_dir / "lab.json").read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"lab '{names.lab}' is not up (no readable {names.state_dir / 'lab.json'}: {exc})") from exc
    source = info.get("source")
    if not source:
        raise LabError(f"lab '{names.lab}' was built from a scenario without a file; `set` needs one "
                       "(python -m tests.lab up FILE.yaml)")
    path = Path(source)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"cannot read the lab's scenario {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise LabError(f"{path}: not a scenario mapping")
    return data, info.get("scenario") or path.stem, path


def _with_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    data = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        *parents, leaf = _key_path(key)
        node = data
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = value
    return data


def _key_path(key: str) -> List[str]:
    """``endpoints.ecr.api.private_dns`` → [endpoints, ecr.api, private_dns]: service names hold dots."""
    first, _, rest = key.partition(".")
    if not rest:
        return [first]
    if first == "endpoints":
        svc, _, leaf = rest.rpartition(".")
        return [first, svc, leaf]
    return [first] + rest.split(".")


def _world(names: Names, data: Mapping[str, Any], scenario_name: str, source: Path) -> World:
    try:
        return build(parse(dict(data), "set", default_name=scenario_name, source=source), names.lab)
    except ScenarioError as exc:
        # "set:endpoints.ssm.unreachable_azs: …" → the key and the problem, which is what the user typed.
        raise LabError(str(exc).split(":", 1)[1] if str(exc).startswith("set:") else str(exc)) from None


def _check_endpoints_exist(world: World, overrides: Mapping[str, Any]) -> None:
    present = [s.name for s in world.services if s.present]
    for key in overrides:
        m = re.fullmatch(rf"endpoints\.{_SVC}\.\w+", key)
        if m and m.group("svc") not in present:
            raise LabError(f"{key}: this lab has no {m.group('svc')} endpoint (it has: {', '.join(present)})")


def _check_runtime_only(before: World, after: World, overrides: Mapping[str, Any]) -> None:
    """A runtime change may not move addresses (they are interfaces and listeners of the AWS layer)."""
    if before.vpc_addresses != after.vpc_addresses or [s.name for s in before.services] != \
            [s.name for s in after.services]:
        raise LabError(f"{', '.join(overrides)}: would change the lab's addresses; build a new lab instead")


# --- applying ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetResult:
    lab: str
    overrides: Mapping[str, Any]  # everything set so far, this call's assignments included
    firewall_replaced: bool
    resolver_restarted: bool
    api_changes: Tuple[str, ...] = ()  # what the AWS layer changed in moto (live_sync)

    def summary(self) -> str:
        done = [what for what, did in (("router/security-group rules replaced", self.firewall_replaced),
                                       ("resolver restarted", self.resolver_restarted),
                                       ("EC2 API updated: " + ", ".join(self.api_changes), bool(self.api_changes)))
                if did]
        now = " ".join(f"{k}={_show(v)}" for k, v in self.overrides.items())
        return f"lab '{self.lab}': {'; '.join(done) or 'already so, nothing changed'} (in force: {now})"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value) or "none"
    return str(value)


def _recorded_pid(state_dir: Path, label: str) -> Optional[int]:
    """The pid in <state>/pids/<label>.pid if that process still runs (same start time)."""
    try:
        pid_text, started = (state_dir / "pids" / f"{label}.pid").read_text().split()
        stat = Path(f"/proc/{int(pid_text)}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(pid_text) if fields[19] == started and fields[0] != "Z" else None


def set_knobs(name: Optional[str], assignments: Union[Mapping[str, Any], Sequence[str]]) -> SetResult:
    """Applies ``KEY=VALUE`` assignments to the running lab ``name``; raises LabError (one line)."""
    names = labmod.require_up(name)
    new = _parse_assignments(assignments)
    state = names.state_dir
    with open(state / "live.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `set`s at once would race on the files and dnsmasq
        live_path = state / LIVE_FILE
        try:
            earlier = json.loads(live_path.read_text()).get("overrides", {})
        except (OSError, ValueError):
            earlier = {}
        base, scenario_name, source = _lab_source(names)
        before = _world(names, _with_overrides(base, earlier), scenario_name, source)
        if not earlier and json.loads(json.dumps(before.to_json(state))) != _json_or_none(state / "world.json"):
            raise LabError(f"{source} changed since the lab was built; rebuild it (python -m tests.lab up)")
        _check_endpoints_exist(before, new)
        overrides = {**earlier, **new}
        after = _world(names, _with_overrides(base, overrides), scenario_name, source)
        _check_runtime_only(before, after, new)

        # Both compare with what is in force (router.nft, dnsmasq.conf), so a `set` that failed
        # half-way is completed by the next one.
        replaced = firewall.replace(names.vpc_ns, after, state)
        restarted = dns.restart(Launcher(state), names.vpc_ns, after, _recorded_pid(state, "dnsmasq"))
        api = _sync_aws(state, after)
        tmp = live_path.with_name(LIVE_FILE + ".tmp")
        tmp.write_text(json.dumps({"overrides": overrides}, indent=1) + "\n")
        os.replace(tmp, live_path)
    return SetResult(names.lab, overrides, replaced, restarted, api)


AWS_SYNC_TIMEOUT_S = 10.0


def _sync_aws(state: Path, world: World) -> Tuple[str, ...]:
    """Hands the new world to the AWS layer (SIGHUP) and waits, bounded, until moto shows it."""
    from .aws import live_sync

    pid = _recorded_pid(state, "aws")
    if pid is None or (_json_or_none(state / "lab.json") or {}).get("aws") != "real":
        return ()
    generation = time.monotonic_ns()
    data = dict(json.loads(json.dumps(world.to_json(state))), generation=generation)
    tmp = state / (live_sync.LIVE_WORLD + ".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, state / live_sync.LIVE_WORLD)
    os.kill(pid, signal.SIGHUP)
    status: Dict[str, Any] = {}

    def synced() -> bool:
        status.update(_json_or_none(state / live_sync.LIVE_STATUS) or {})
        return status.get("generation") == generation

    wait_until("the AWS layer's view of the change", synced, AWS_SYNC_TIMEOUT_S)
    if status.get("error"):
        raise LabError(f"the AWS layer could not apply the change: {status['error']}")
    return tuple(status.get("applied") or ())


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def overrides_in_force(name: Optional[str]) -> Dict[str, Any]:
    """What ``set`` has changed in the lab so far (empty for a lab as built)."""
    names = labmod.require_up(name)
    return dict(_json_or_none(names.state_dir / LIVE_FILE) or {}).get("overrides", {})


set = set_knobs  # noqa: A001 - `live.set(...)` reads like the command; nothing here uses the builtin
