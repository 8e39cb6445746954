"""The Amazon resolver answers (``resolver``) and the system resolver agrees with it (``resolver.system``).

``resolver`` asks the Amazon resolver itself, never whatever /etc/resolv.conf names: the VPC's
**primary** IPv4 CIDR base + 2, falling back to 169.254.169.253 (AWS-FACTS "DNS": the resolver lives
at both; with several CIDR blocks only the primary one's +2 is the resolver).

``resolver.system`` then compares what programs on the instance actually get (/etc/hosts first, as
nsswitch's default "files dns" order does on Amazon Linux, then the /etc/resolv.conf nameservers)
with the Amazon resolver's answers for every service hostname and S3's regional name.
"""
from __future__ import annotations

import ipaddress
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import workers
from .causes import explain
from .dhcpdns import custom_dns_cause
from .dnsquery import DnsAnswer, Exchange, query_a, wait_any
from .hostnames import service_hostname
from .model import Check, Context, Facts, Finding, Outcome, Settings, Status, outcome, worst

FALLBACK_RESOLVER = "169.254.169.253"  # the Amazon resolver's link-local address (AWS-FACTS "DNS")
SLOW_S = 1.0  # a resolver answering slower than this stalls every client lookup noticeably
# How long the resolver check listens for a late reply before it calls the resolver silent: glibc's
# default per-try timeout (RES_TIMEOUT, 5 s). A reply later than that helps almost no client.
LATE_WAIT_S = 5.0
SLOW_MARGIN = 1.5  # dependents of a slow resolver wait this many times its measured latency
GLIBC_TIMEOUT_S, GLIBC_ATTEMPTS = 5.0, 2  # resolv.conf's defaults (resolv.h RES_TIMEOUT, RES_DFLRETRY)
HOSTS_PATH = "/etc/hosts"
RESOLV_CONF_PATH = "/etc/resolv.conf"
GLIBC_DEFAULT_NAMESERVER = "127.0.0.1"  # what glibc uses when resolv.conf names none
GLIBC_MAXNS = 3  # glibc reads at most three nameserver lines
# Without a known region any AWS name proves the resolver answers; this one exists everywhere.
_STANDIN_REGION = "us-east-1"
_ANSWERED = ("answer", "nxdomain", "nodata")
# RFC 1918 + RFC 6598 shared space. ipaddress.is_private is not used on purpose: it also flags the
# documentation ranges (198.51.100.0/24, 203.0.113.0/24) that stand for public addresses in the lab.
_PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in
                      ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))


# --- shared helpers (endpoints.py uses these too) ------------------------------------------------

def address_kind(ip: str, networks: Sequence[ipaddress.IPv4Network]) -> str:
    """"vpc" (inside the VPC CIDRs), "private" (RFC 1918 elsewhere), or "public"."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "public"
    if any(addr in n for n in networks if n.version == addr.version):
        return "vpc"
    if any(addr in n for n in _PRIVATE_NETS if n.version == addr.version):
        return "private"
    return "public"


def resolver_base2(vpc_cidr: str) -> str:
    """The Amazon resolver address of a VPC: its primary CIDR's network address + 2."""
    return str(ipaddress.ip_network(vpc_cidr, strict=False).network_address + 2)


def region_or_standin(facts: Facts) -> str:
    return facts.region or _STANDIN_REGION


def checked_hostnames(settings: Settings, region: str) -> List[str]:
    """Each service hostname plus S3's regional name (what the gateway endpoint serves)."""
    hosts = [service_hostname(s, region, settings.fips) for s in settings.services]
    hosts.append(service_hostname("s3", region))
    return list(dict.fromkeys(hosts))


# --- resolver ------------------------------------------------------------------------------------

def candidates(facts: Facts, settings: Settings) -> List[str]:
    """Where to ask, in order: the configured resolver or primary CIDR base + 2, then 169.254.169.253."""
    if facts.ipv6_only:  # no IPv4 address here: only fd00:ec2::253 can answer (checks/ipv6.py)
        from .ipv6 import resolver_candidates
        return resolver_candidates(facts, settings.resolver)
    first = settings.resolver or resolver_base2(facts.require("vpc_cidr"))
    return list(dict.fromkeys([first, FALLBACK_RESOLVER]))


def run_resolver(ctx: Context) -> Outcome:
    settings, facts = ctx.settings, ctx.facts
    servers = candidates(facts, settings)
    host = service_hostname(settings.services[0], region_or_standin(facts), settings.fips)
    per_query = settings.dns_timeout_s
    exchanges = [Exchange(host, servers[0])]
    try:
        answered = wait_any(exchanges, exchanges[0].start + ctx.budget(per_query))
        if answered is None:
            # The primary address is silent for now: ask the fallback, and keep listening to the
            # primary meanwhile (its reply may just be late).
            exchanges += [Exchange(host, s) for s in servers[1:]]
            answered = wait_any(exchanges, exchanges[-1].start + ctx.budget(per_query))
        if answered is None:
            # Still nothing: a slow resolver is not a switched-off one. Listen on, up to glibc's
            # default per-try timeout from the first query, for a late reply to any question asked.
            late_until = exchanges[0].start + max(LATE_WAIT_S, per_query)
            answered = wait_any(exchanges, min(late_until, time.monotonic() + max(0.0, ctx.remaining() - 0.2)))
        tried = [ex.answer or ex.timed_out(time.monotonic() - ex.start) for ex in exchanges]
    finally:
        for ex in exchanges:
            ex.close()
    last = answered.answer if answered is not None and answered.answer is not None else tried[-1]
    evidence: Dict[str, Any] = {
        "server": last.server, "host": host, "outcome": last.outcome, "rcode": last.rcode,
        "answers": list(last.addresses), "ttl": last.ttl, "latency_ms": _ms(last.latency_s),
        "query_timeout_s": per_query,
        "tried": [{"server": a.server, "outcome": a.outcome, "latency_ms": _ms(a.latency_s), "error": a.error}
                  for a in tried],
    }
    if answered is None:
        names = " and ".join(a.server for a in tried)
        waited = _ms(max(a.latency_s for a in tried) if tried else 0.0)
        evidence["waited_ms"] = waited
        return outcome(Finding(
            "resolver", Status.CRITICAL,
            f"The Amazon resolver does not answer ({'; '.join(f'{a.server}: {_silent(a)}' for a in tried)}; "
            f"no late reply within {waited:g} ms)",
            evidence=evidence, **explain("resolver_unreachable", resolver=names, vpc_id=facts.vpc_id)))
    # A server asked before the one that answered and silent (not one asked later and still pending).
    order = [a.server for a in tried]
    silent_first = [a for a in tried[:order.index(last.server)] if a.outcome in ("timeout", "unreachable")]
    note = (f" (after {silent_first[0].server} gave no answer: {silent_first[0].outcome})" if silent_first else "")
    data: Dict[str, Any] = {"server": last.server}
    if last.outcome == "error":
        # The server is reachable, so dependents still run and name the per-service effect.
        return outcome(Finding(
            "resolver", Status.CRITICAL, f"The Amazon resolver {last.server} answered {last.rcode} for {host}{note}",
            evidence=evidence, **explain("resolver_error", resolver=last.server, rcode=last.rcode)), data=data)
    if last.latency_s > per_query:
        # It answers, only later than one query waits: the dependents wait longer (query_timeout).
        data["query_timeout_s"] = round(last.latency_s * SLOW_MARGIN, 3)
        timeout, attempts = read_resolv_options(RESOLV_CONF_PATH)
        evidence.update(resolv_conf_timeout_s=timeout, resolv_conf_attempts=attempts)
        # Past resolv.conf's timeout the SSM agent never resolves: Go's resolver asks each try on a fresh
        # socket, so the late reply to an earlier try is lost (glibc keeps its socket and takes it on a retry).
        beyond = last.latency_s > timeout
        clients = (f"longer than the timeout:{timeout:g} that {RESOLV_CONF_PATH} gives programs here: the SSM agent "
                   f"(Go's resolver, a fresh socket per try) never gets the answer, glibc programs only on a retry"
                   if beyond else
                   f"within the timeout:{timeout:g} that {RESOLV_CONF_PATH} gives programs here, which wait that long "
                   f"for every lookup")
        if beyond:  # resolver.system names the effect on programs here (the SSM agent's path)
            data["slow_for_clients"] = {"latency_ms": _ms(last.latency_s), "resolv_conf_timeout_s": timeout,
                                        "clients": clients}
        return outcome(Finding(
            "resolver", Status.CRITICAL if beyond else Status.WARNING,
            f"The Amazon resolver {last.server} answers slowly: {host} after {_ms(last.latency_s)} ms, longer than "
            f"the {per_query:g} s a query waits{note}",
            evidence=evidence,
            **explain("resolver_slow_beyond_timeout", resolver=last.server, latency_ms=_ms(last.latency_s),
                      timeout_s=f"{per_query:g}", clients=clients)), data=data)
    if last.latency_s > SLOW_S:
        return outcome(Finding(
            "resolver", Status.WARNING,
            f"The Amazon resolver {last.server} answered in {_ms(last.latency_s)} ms (> {SLOW_S:g} s){note}",
            evidence=evidence,
            **explain("resolver_slow", resolver=last.server, latency_ms=_ms(last.latency_s))), data=data)
    # NXDOMAIN / no data for the service name still proves the resolver answers; dns.<svc> says more.
    what = ", ".join(last.addresses) if last.addresses else (last.rcode or last.outcome)
    return outcome(Finding(
        "resolver", Status.OK,
        f"The Amazon resolver {last.server} answers ({host} -> {what}, {_ms(last.latency_s)} ms){note}",
        evidence=evidence), data=data)


def query_timeout(ctx: Context) -> float:
    """How long one query to the Amazon resolver may wait: the configured timeout, or longer when
    the resolver check measured a slower answer (a slow resolver must not read as a silent one)."""
    data = ctx.data("resolver")
    measured = float(data.get("query_timeout_s") or 0.0) if isinstance(data, Mapping) else 0.0
    if measured <= ctx.settings.dns_timeout_s:
        return ctx.budget(ctx.settings.dns_timeout_s)
    return ctx.budget(min(measured, max(ctx.settings.dns_timeout_s, ctx.remaining() - 0.2)))


def _silent(a: DnsAnswer) -> str:
    return a.error or a.outcome


def read_resolv_options(path: str) -> Tuple[float, int]:
    """glibc's per-try timeout and attempts from resolv.conf ``options`` (defaults 5 s and 2)."""
    timeout, attempts = GLIBC_TIMEOUT_S, GLIBC_ATTEMPTS
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return timeout, attempts
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields or fields[0] != "options":
            continue
        for opt in fields[1:]:
            name, _, value = opt.partition(":")
            if name in ("timeout", "attempts") and value.isdigit():
                if name == "timeout":
                    timeout = float(min(int(value), 30))  # glibc caps RES_MAXRETRANS at 30
                else:
                    attempts = min(int(value), 5)  # and RES_MAXRETRY at 5
    return timeout, attempts


# --- resolver.system -----------------------------------------------------------------------------

def read_hosts(path: str) -> Dict[str, List[str]]:
    """name (lower case) -> IPv4 addresses, in file order, from an /etc/hosts-format file."""
    out: Dict[str, List[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            addr = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if addr.version != 4:
            continue  # the checks ask for A records only
        for name in fields[1:]:
            ips = out.setdefault(name.lower().rstrip("."), [])
            if str(addr) not in ips:
                ips.append(str(addr))
    return out


def read_nameservers(path: str) -> Tuple[List[str], bool]:
    """The nameservers glibc would use from a resolv.conf, and whether the file named any."""
    servers: List[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            addr = fields[1].split("%", 1)[0]  # drop an IPv6 zone index
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                continue
            if addr not in servers:
                servers.append(addr)
    if not servers:
        return [GLIBC_DEFAULT_NAMESERVER], False
    return servers[:GLIBC_MAXNS], True


def _differs(system: Sequence[str], amazon: Sequence[str], from_hosts_file: bool,
             networks: Sequence[ipaddress.IPv4Network]) -> bool:
    if set(system) == set(amazon):
        return False
    if from_hosts_file or not system or not amazon:
        return True
    # Public names such as S3's are load-balanced: two servers (or two queries) give different
    # public sets. That is not a disagreement; a private vs public split is.
    kinds = {address_kind(a, networks) for a in list(system) + list(amazon)}
    return kinds != {"public"}


def _severity(system: Sequence[str], amazon: Sequence[str], networks: Sequence[ipaddress.IPv4Network]) -> Status:
    """CRITICAL when the Amazon resolver gives private endpoint addresses and the system path leads
    elsewhere (outside the VPC or not an endpoint address): programs bypass the endpoint."""
    amazon_private = bool(amazon) and all(address_kind(a, networks) == "vpc" for a in amazon)
    leads_elsewhere = not system or any(a not in amazon or address_kind(a, networks) != "vpc" for a in system)
    return Status.CRITICAL if amazon_private and leads_elsewhere else Status.WARNING


def run_system(ctx: Context, hosts_path: Optional[str] = None, resolv_conf_path: Optional[str] = None) -> Outcome:
    settings, facts = ctx.settings, ctx.facts
    hosts_path = hosts_path or HOSTS_PATH
    resolv_conf_path = resolv_conf_path or RESOLV_CONF_PATH
    amazon_server = ctx.data("resolver")["server"]
    networks = facts.networks()
    hostnames = checked_hostnames(settings, facts.require("region"))
    hosts_file = read_hosts(hosts_path)
    nameservers, named = read_nameservers(resolv_conf_path)
    amazon_addresses = {amazon_server, FALLBACK_RESOLVER}
    if facts.vpc_cidr:
        amazon_addresses.add(resolver_base2(facts.vpc_cidr))
    slow = ctx.data("resolver").get("slow_for_clients")
    if slow and all(ns in amazon_addresses for ns in nameservers):
        return _slow_for_programs(ctx, slow, nameservers, hostnames, hosts_file, resolv_conf_path, amazon_server)
    # Asking the very server the resolver check uses again would only compare it with itself.
    asked = [ns for ns in nameservers if ns != amazon_server]

    timeout = query_timeout(ctx)  # longer when the resolver check measured a slow resolver
    # The Amazon resolver's answer is only asked for where something else answers the same name
    # (another nameserver, an /etc/hosts line): with resolv.conf naming the Amazon resolver alone,
    # the usual case, there is nothing to compare, and dns.<service> asks it anyway.
    compared = [h for h in hostnames if asked or h in hosts_file]
    jobs = [(h, amazon_server) for h in compared] + [(h, ns) for h in hostnames for ns in asked]
    answers = dict(zip(jobs, workers.map_all(lambda job: query_a(job[0], job[1], timeout), jobs)))

    per_host: Dict[str, Dict[str, Any]] = {}
    diffs: List[Dict[str, Any]] = []
    silent: Dict[str, str] = {}  # nameserver -> error, when it answered nothing at all
    for ns in asked:
        outs = [answers[(h, ns)] for h in hostnames]
        if all(a.outcome in ("timeout", "unreachable") for a in outs):
            silent[ns] = outs[0].error or outs[0].outcome
    for host in hostnames:
        row: Dict[str, Any] = {}
        per_host[host] = row
        if (host, amazon_server) not in answers:
            row["amazon"] = "not asked: nothing else answers this name here (no other nameserver, no hosts line)"
            for ns in nameservers:
                row[f"nameserver {ns}"] = "the Amazon resolver itself"
            continue
        amazon = answers[(host, amazon_server)]
        row["amazon"] = list(amazon.addresses) or amazon.outcome
        sources: List[Tuple[str, List[str], bool, Optional[DnsAnswer]]] = []
        if host in hosts_file:
            sources.append((hosts_path, hosts_file[host], True, None))
        for ns in nameservers:
            if ns == amazon_server:
                row[f"nameserver {ns}"] = "the Amazon resolver itself"
                continue
            ans = answers[(host, ns)]
            if ns in silent or ans.outcome in ("timeout", "unreachable"):
                row[f"nameserver {ns}"] = ans.outcome
                continue
            sources.append((f"nameserver {ns}", list(ans.addresses), False, ans))
        for source, system, from_file, ans in sources:
            row[source] = system or (ans.outcome if ans else [])
            if amazon.outcome != "answer":
                continue  # nothing to compare with; dns.<svc> reports the Amazon side
            if not _differs(system, amazon.addresses, from_file, networks):
                continue
            diffs.append({"host": host, "source": source, "system_answers": system or (ans.outcome if ans else []),
                          "amazon_answers": list(amazon.addresses),
                          "status": _severity(system, amazon.addresses, networks).name})

    on_amazon = [ns for ns in nameservers if ns in amazon_addresses]
    evidence: Dict[str, Any] = {
        "hosts_file": hosts_path, "resolv_conf": resolv_conf_path, "nameservers": nameservers,
        "resolv_conf_names_nameservers": named, "amazon_resolver": amazon_server,
        "nameservers_are_amazon_resolver": on_amazon, "hosts": per_host, "differences": diffs,
        "silent_nameservers": silent,
    }
    findings: List[Tuple[Status, Dict[str, Optional[str]], str]] = []
    custom = _custom_public(diffs, amazon_addresses, networks)
    for source, ds in custom.items():
        # Not the Amazon resolver, and public where the Amazon resolver is private: it does not forward
        # amazonaws.com to the VPC resolver; name the DHCP option set behind it (checks.dhcpdns).
        ns = source.split(" ", 1)[1]
        hosts = [d["host"] for d in ds]
        got = sorted({a for d in ds for a in d["system_answers"]})
        want = sorted({a for d in ds for a in d["amazon_answers"]})
        cause = custom_dns_cause(ctx, ns, resolv_conf_path, hosts, got, want, amazon_server,
                                 resolver_base2(facts.vpc_cidr) if facts.vpc_cidr else None, evidence)
        findings.append((Status.CRITICAL, cause, f"nameserver {ns} (not the Amazon resolver) answers {len(hosts)} "
                                                 f"endpoint names with public addresses ({hosts[0]} -> "
                                                 f"{_show(ds[0]['system_answers'])}, the Amazon resolver: "
                                                 f"{_show(ds[0]['amazon_answers'])})"))
    for d in diffs:
        if d["source"] in custom:
            continue
        got, want = _show(d["system_answers"]), _show(d["amazon_answers"])
        findings.append((Status[d["status"]],
                         explain("system_dns_differs", source=d["source"], host=d["host"], system_answers=got,
                                 amazon_answers=want),
                         f"{d['source']} answers {d['host']} with {got}, the Amazon resolver with {want}"))
    if silent:
        # Every nameserver silent: nothing on the instance resolves (unless /etc/hosts covers it).
        status = Status.CRITICAL if len(silent) == len(asked) and not on_amazon else Status.WARNING
        ns, err = next(iter(silent.items()))
        findings.append((status, explain("system_dns_unreachable", source=f"nameserver {ns}", path=resolv_conf_path,
                                         error=err, resolver=amazon_server),
                         f"nameserver {ns} from {resolv_conf_path} does not answer ({err})"))
    if not findings:
        uses = (f"; {resolv_conf_path} uses the Amazon resolver ({', '.join(on_amazon)})" if on_amazon else "")
        return outcome(Finding(
            "resolver.system", Status.OK,
            f"The system resolver agrees with the Amazon resolver for {len(hostnames)} names{uses}",
            evidence=evidence), data={"nameservers": nameservers, "differences": 0})
    status = worst([f[0] for f in findings])
    top = next(f for f in findings if f[0] == status)
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    # Names for which programs here (the SSM agent, botocore) get no endpoint address: dependents
    # that would dial them know the cause before they time out.
    misled = sorted({d["host"] for d in diffs if d["status"] == "CRITICAL"})
    if silent and status == Status.CRITICAL:
        misled = sorted(hostnames)
    return outcome(Finding("resolver.system", status, top[2] + more, evidence=evidence, **top[1]),
                   data={"nameservers": nameservers, "differences": len(diffs), "misled_hosts": misled})


def _slow_for_programs(ctx: Context, slow: Mapping[str, Any], nameservers: Sequence[str], hostnames: Sequence[str],
                       hosts_file: Mapping[str, List[str]], path: str, amazon_server: str) -> Outcome:
    """resolv.conf names only the Amazon resolver, which answers after the timeout resolv.conf gives
    programs here: what they get is no answer in time (the SSM agent's lookups fail)."""
    misled = [h for h in hostnames if h not in hosts_file]  # an /etc/hosts line still answers at once
    evidence = {"resolv_conf": path, "nameservers": list(nameservers), "amazon_resolver": amazon_server,
                "latency_ms": slow["latency_ms"], "resolv_conf_timeout_s": slow["resolv_conf_timeout_s"],
                "names_without_answer_in_time": misled}
    return outcome(Finding(
        "resolver.system", Status.CRITICAL,
        f"{path} names only the Amazon resolver ({', '.join(nameservers)}), which answers after "
        f"{slow['latency_ms']} ms, past its timeout:{slow['resolv_conf_timeout_s']:g}: lookups by programs here "
        f"(the SSM agent's included) time out", evidence=evidence,
        **explain("resolver_slow_beyond_timeout", resolver=amazon_server, latency_ms=slow["latency_ms"],
                  timeout_s=f"{ctx.settings.dns_timeout_s:g}", clients=slow["clients"])),
        data={"nameservers": list(nameservers), "differences": 0, "misled_hosts": misled})


def _custom_public(diffs: Sequence[Dict[str, Any]], amazon_addresses: Any,
                   networks: Sequence[ipaddress.IPv4Network]) -> Dict[str, List[Dict[str, Any]]]:
    """nameserver source -> its differences where it answers publicly and the Amazon resolver with
    addresses inside the VPC (a nameserver that is not the Amazon resolver)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for d in diffs:
        source, system, amazon = d["source"], d["system_answers"], d["amazon_answers"]
        if not source.startswith("nameserver ") or source.split(" ", 1)[1] in amazon_addresses:
            continue
        if not isinstance(system, list) or not system or not amazon:
            continue
        if all(address_kind(a, networks) == "public" for a in system) and \
                all(address_kind(a, networks) == "vpc" for a in amazon):
            out.setdefault(source, []).append(d)
    return out


def misleads(ctx: Context, host: str) -> bool:
    """Does ``resolver.system`` (a wanted check) say programs here do not get ``host`` right (a dead
    or too-slow nameserver, a pin elsewhere)? Calls to that name would fail the same way, later."""
    system = ctx.data("resolver.system")
    return isinstance(system, Mapping) and host in (system.get("misled_hosts") or ())


def _show(answers: Any) -> str:
    """Addresses as "a, b"; an outcome such as "nxdomain" as is."""
    if isinstance(answers, (list, tuple)):
        return ", ".join(answers) if answers else "nothing"
    return str(answers)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def checks(settings: Settings) -> List[Check]:
    dns_wait = settings.dns_timeout_s
    return [
        # two servers, one query each, then a bounded wait for a late reply
        Check("resolver", run_resolver, timeout_s=max(2 * dns_wait, LATE_WAIT_S) + 1.0),
        # all queries run concurrently, each bounded by dns_timeout_s
        # ec2.api (wanted): the DHCP option set behind a custom nameserver, only when one misleads
        Check("resolver.system", run_system, needs=("resolver",), wants=("ec2.api",), timeout_s=dns_wait + 4.0),
    ]
