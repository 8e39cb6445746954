"""The folded view of the table: each area (an endpoint service, S3, the SSM agent, …) in one line.

A person reads what is wrong first (render.py prints those rows in full); what works needs one
line per area, built from the evidence its checks already carry:
``ssm          ok  2 AZ · TLS 1.3 · connect ≤ 3.1 ms``. An area with a problem says where the
problem rows are and which of its checks passed; ``-v`` prints every row instead.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .checks.model import Finding, Status
from .report import root_of as report_root_of

# Finding-id roots that read better together under one name (the ids themselves are unchanged).
_AREA_OF_ROOT = {"imds": "instance", "instance": "instance", "iam": "credentials", "auth": "credentials",
                 "session": "session", "clock": "clock", "resolver": "resolver", "ec2": "ec2 api"}
_SERVICE_ROOTS = ("dns", "eni", "reach")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _services(findings: Sequence[Finding]) -> List[str]:
    """Endpoint services (dns.<svc>/eni.<svc>/reach.<svc>), longest first for prefix matching."""
    names = set()
    for f in findings:
        root, _, rest = f.id.partition(".")
        if root in _SERVICE_ROOTS and rest:
            if root == "reach":
                # reach.<svc>.<ip>: the service is what precedes the address (IPv4 has dots itself)
                parts = rest.split(".")
                for cut in range(1, len(parts)):
                    if _is_ip(".".join(parts[cut:])):
                        rest = ".".join(parts[:cut])
                        break
            names.add(rest)
    return sorted(names, key=len, reverse=True)


def area_of(fid: str, services: Sequence[str]) -> str:
    root, _, rest = fid.partition(".")
    if root in _SERVICE_ROOTS:
        for svc in services:
            if rest == svc or rest.startswith(svc + "."):
                return svc
    if fid == "ssm.preferences":
        return "session"
    return _AREA_OF_ROOT.get(root, root)


def areas(findings: Sequence[Finding]) -> List[Tuple[str, List[Finding]]]:
    """(area, its findings) in the order the areas first appear in the report."""
    services = _services(findings)
    out: Dict[str, List[Finding]] = {}
    for f in findings:
        out.setdefault(area_of(f.id, services), []).append(f)
    return list(out.items())


# --- one area's line ----------------------------------------------------------------------------------

def _ms(value: Any) -> str:
    value = float(value)
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _ev(f: Finding) -> Mapping[str, Any]:
    return f.evidence if isinstance(f.evidence, Mapping) else {}


def _service_tokens(area: str, found: Sequence[Finding]) -> List[str]:
    per_ip = [f for f in found if f.id.startswith(f"reach.{area}.") and f.status == Status.OK]
    tokens: List[str] = []
    eni = next((f for f in found if f.id == f"eni.{area}" and f.verified), None)
    if eni is not None and _ev(eni).get("confirmed") and _ev(eni).get("endpoint_id"):
        tokens.append(str(_ev(eni)["endpoint_id"]))
    if per_ip:
        azs = {str(_ev(f).get("az")) for f in per_ip if _ev(f).get("az")}
        count = len(per_ip)
        summary = next((f for f in found if f.id == f"reach.{area}"), None)
        total = _ev(summary).get("total") if summary is not None else None
        of = f" of {total}" if isinstance(total, int) and total > count else ""  # "1 of 2 ENIs": some fail
        tokens.append(f"{len(azs)}{of} AZ" if azs else f"{count}{of} ENI{'s' if count != 1 or of else ''}")
        versions = sorted({str(_ev(f).get("tls_version")).replace("TLSv", "") for f in per_ip
                           if _ev(f).get("tls_version")})
        if versions:
            tokens.append("TLS " + "/".join(versions))
        times = [float(_ev(f)["connect_ms"]) for f in per_ip if isinstance(_ev(f).get("connect_ms"), (int, float))]
        if times:
            tokens.append(f"connect {'≤ ' if len(times) > 1 else ''}{_ms(max(times))} ms")
    else:
        dns = next((f for f in found if f.id == f"dns.{area}" and f.status == Status.OK and f.verified), None)
        answers = _ev(dns).get("answers") if dns is not None else None
        if isinstance(answers, list):
            tokens.append(f"resolves to {len(answers)} private address{'es' if len(answers) != 1 else ''}")
    return tokens


def _token(f: Finding) -> Optional[str]:
    """A few words for one passing check (None: its aspect name is enough)."""
    ev = _ev(f)
    fid = f.id
    if fid == "imds":
        return "IMDSv2" + (f" {_ms(ev['duration_ms'])} ms" if isinstance(ev.get("duration_ms"), (int, float)) else "")
    if fid == "instance.public_ip":
        return "no public IPv4" if ev.get("public_ipv4") is None else None
    if fid == "instance.profile" and ev.get("instance_profile_arn"):
        return "profile " + str(ev["instance_profile_arn"]).rsplit("/", 1)[-1]
    if fid == "iam.credentials" and ev.get("role"):
        return f"role {ev['role']}"
    if fid == "auth.ssm":
        return "SSM accepts this instance"
    if fid == "ssm_agent":
        conns = ev.get("endpoint_connections")
        return "running" + (f", {len(conns)} endpoint connections" if isinstance(conns, list) else "")
    if fid == "ssm_agent.version" and ev.get("version"):
        return f"v{ev['version']}"
    if fid == "resolver" and ev.get("server"):
        latency = ev.get("latency_ms")
        return f"{ev['server']} answers" + (f" in {_ms(latency)} ms" if isinstance(latency, (int, float)) else "")
    if fid == "resolver.system":
        return "the system resolver agrees"
    if fid == "ec2.api":
        return "EC2 API answers"
    if fid == "s3.dns":
        return "interface endpoint" if ev.get("interface_endpoint") else "gateway endpoint"
    if fid == "dynamodb" and ev.get("applicable") is False:  # checks/dynamodb.py: nothing to check here
        return "not checked: not configured, no gateway endpoint seen"
    if fid == "dynamodb.dns":
        return "interface endpoint" if ev.get("interface_endpoint") else "gateway endpoint"
    if fid == "clock" and isinstance(ev.get("skew_s"), (int, float)):
        return f"skew {ev['skew_s']:g} s"
    if fid == "ssm.preferences":
        return "preferences read"
    if fid == "session.requirements" and isinstance(ev.get("required"), list):
        return "needs " + (", ".join(map(str, ev["required"])) or "no extra endpoint")
    if fid.startswith("egress."):
        return None  # folded below: which targets stay unreachable
    if ev.get("operation") and ev.get("http_status"):  # s3.api, s3.object, other signed calls
        latency = ev.get("latency_ms")
        return f"{ev['operation']} {ev['http_status']}" + (f" in {_ms(latency)} ms"
                                                           if isinstance(latency, (int, float)) else "")
    return None


def _aspect(fid: str) -> str:
    return fid.split(".", 1)[1] if "." in fid else fid


def _plain_tokens(area: str, found: Sequence[Finding]) -> List[str]:
    tokens: List[str] = []
    rest: List[str] = []
    for f in found:
        if f.status != Status.OK or not f.verified:  # named as "not proven", never as passing
            continue
        try:
            token = _token(f)
        except (TypeError, ValueError, KeyError):  # evidence of another shape: the aspect name will do
            token = None
        if token:
            tokens.append(token)
        elif not f.id.startswith("egress."):
            rest.append(_aspect(f.id))
    egress = [f for f in found if f.id.startswith("egress.") and f.status == Status.OK and f.verified]
    if egress:
        tokens.append("no internet path: " + ", ".join(_aspect(f.id) for f in egress) + " unreachable")
    if rest:
        tokens.append(", ".join(rest) + " ok")
    return tokens


def _some(ids: Sequence[str], limit: int = 4) -> str:
    return ", ".join(ids[:limit]) + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


def area_line(area: str, found: Sequence[Finding], is_service: bool,
              root_of: Callable[[Finding], str] = lambda f: str(f.blocked_by)) -> Tuple[Status, str]:
    """(the area's worst status, the words after it); ``root_of`` names what blocked a finding."""
    worst = max((f.status for f in found), default=Status.OK)
    try:
        tokens = _service_tokens(area, found) if is_service else _plain_tokens(area, found)
    except (TypeError, ValueError, KeyError):
        tokens = []
    tokens = [t for t in tokens if t and t.strip()]
    passing = sum(1 for f in found if f.status == Status.OK and f.verified)
    if not tokens and passing:
        tokens = [f"{passing} check{'s' if passing != 1 else ''} ok"]
    text = " · ".join(tokens)
    shown = [f.id for f in found if f.status != Status.OK and f.blocked_by is None]
    blocked = [f for f in found if f.status != Status.OK and f.blocked_by is not None]
    problems = []
    if shown:
        problems.append(f"see above: {_some(shown)}")
    if blocked:  # listed above under their root, not as rows
        roots = list(dict.fromkeys(root_of(f) for f in blocked))
        problems.append(f"not run because of {_some(roots)}: {_some([f.id for f in blocked])}")
    if problems:
        text = "; ".join(problems) + (f"; passing: {text}" if text else "")
    unproven = [f.id for f in found if f.status == Status.OK and not f.verified]
    if unproven:
        text += f" (not proven: {', '.join(unproven)})" if text else f"not proven, see above: {', '.join(unproven)}"
    return worst, text


def fold(findings: Sequence[Finding], paint: Callable[[str, str], str]) -> List[str]:
    """One line per area: ``  ssm          ok         2 AZ · TLS 1.3 · connect ≤ 3.1 ms``;
    ``paint(state name, text)`` colours the state column."""
    grouped = areas(findings)
    services = set(_services(findings))
    by_id = {f.id: f for f in findings}

    def root(f: Finding) -> str:
        return report_root_of(by_id, f).id
    width = max((len(a) for a, _ in grouped), default=8)
    lines = []
    for area, found in grouped:
        worst, text = area_line(area, found, area in services, root)
        state = "ok" if worst == Status.OK else worst.name
        if all(f.status == Status.OK and not f.verified for f in found):
            state = "UNVERIFIED"  # nothing in this area was proven: not "ok"
        lines.append(f"  {area:<{width}}  {paint(worst.name if state == 'ok' else state, f'{state:<10}')} {text}")
    return lines
