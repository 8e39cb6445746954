"""The Amazon resolver: dnsmasq in the VPC namespace, with no upstream at all.

It answers only what the world says (service names, S3 names with their bucket subdomains, the
internet stand-in) and NXDOMAIN for anything else, so no query can ever leave the machine.

Latency (``resolver_latency_ms``): this kernel may lack netem, so the delay is a small forwarder
(tests/lab/dns_delay.py) that owns 10.0.0.2 / 169.254.169.253 and holds each query for the given
time before passing it to dnsmasq on 127.0.0.1 inside the VPC namespace.

At runtime (``python -m tests.lab set``) ``restart`` replaces dnsmasq: it reads host-record and
address= only at start (SIGHUP re-reads hosts files, not its configuration).
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from .processes import Launcher, dns_ready, terminate, wait_until
from . import ddbknobs, ipv6lab
from .world import DOMAIN, GOOGLE_IP, GOOGLE_NAMES, RESOLVER_IPS, World

DNSMASQ_LOOPBACK = "127.0.0.1"
TTL_S = 60  # Route 53 private hosted zones answer with 60 s


def dnsmasq_config(world: World, listen: List[str]) -> str:
    lines = [
        "# vpce-doctor lab: the Amazon resolver (generated)",
        "no-resolv",  # no upstream servers: nothing leaves the machine
        "no-hosts",
        "no-poll",
        "bind-interfaces",
        "keep-in-foreground",
        "pid-file=",
        "log-facility=-",
        "cache-size=0",
        f"local-ttl={TTL_S}",
    ] + [f"listen-address={ip}" for ip in listen]
    hosts = world.host_records()
    shadow = world.scenario.dns_shadow_zone
    for name, ips in hosts.items():
        lines += [f"host-record={name},{ip},{TTL_S}" for ip in ips]
    for domain, ips in world.s3_records().items():
        if shadow is not None and shadow.shadows(domain):
            continue  # the shadow zone answers for it: only its own records below (no wildcard)
        # address= covers the domain and every subdomain (virtual-hosted bucket names); local= keeps
        # other query types (AAAA) at NODATA instead of falling through to the catch-all below.
        lines += [f"address=/{domain}/{ip}" for ip in ips] + [f"local=/{domain}/"]
    if shadow is not None:  # the zone's own records (service names among them are in hosts already)
        lines += [f"host-record={name},{ip},{TTL_S}" for name, ips in shadow.records.items() if name not in hosts
                  for ip in ips]
    lines += ipv6lab.dnsmasq_lines(world, TTL_S)  # fd00:ec2::253 and dual-stack endpoints' AAAA records
    lines.append("address=/#/")  # anything else: NXDOMAIN (not REFUSED, as the Amazon resolver)
    return "\n".join(lines) + "\n"


def custom_dnsmasq_config(world: World) -> str:
    """The custom DNS server of ``dhcp_options``: no forwarding for amazonaws.com, so the service
    names get their public addresses (as from public DNS), except the services it forwards by name
    to the Amazon resolver (a conditional forwarder for just those)."""
    dhcp = world.scenario.dhcp_options
    lines = ["# vpce-doctor lab: a custom DNS server from the DHCP option set (generated)", "no-resolv", "no-hosts",
             "no-poll", "bind-interfaces", "keep-in-foreground", "pid-file=", "log-facility=-", "cache-size=0",
             f"local-ttl={TTL_S}"] + [f"listen-address={ip}" for ip in dhcp.custom_servers]
    for svc in world.services:
        if svc.name in dhcp.custom_dns_forwards:
            lines.append(f"server=/{svc.hostname}/{RESOLVER_IPS[0]}")
        else:
            lines.append(f"host-record={svc.hostname},{svc.public_ip},{TTL_S}")
    lines += [f"host-record={name},{ip},{TTL_S}" for name, ips in ddbknobs.host_records(world.region, DOMAIN).items()
              for ip in ips]  # DynamoDB's too
    for domain, ips in world.s3_records().items():  # S3's names are public anyway
        lines += [f"address=/{domain}/{ip}" for ip in ips] + [f"local=/{domain}/"]
    lines += [f"host-record={name},{GOOGLE_IP},{TTL_S}" for name in GOOGLE_NAMES]
    lines.append("address=/#/")
    return "\n".join(lines) + "\n"


def listen_addresses(world: World) -> List[str]:
    """dnsmasq owns the resolver addresses, or loopback behind the delaying forwarder."""
    return [DNSMASQ_LOOPBACK] if world.scenario.resolver_latency_ms else list(RESOLVER_IPS)


def start(launcher: Launcher, vpc_ns: str, world: World) -> None:
    """Starts the resolver (and the delaying forwarder when asked); returns once it answers."""
    state = launcher.state_dir
    latency = world.scenario.resolver_latency_ms
    conf = state / "dnsmasq.conf"
    conf.write_text(dnsmasq_config(world, listen_addresses(world)))
    launcher.start("dnsmasq", vpc_ns, ["dnsmasq", f"--conf-file={conf}"])
    if world.scenario.dhcp_options.custom_servers:
        custom = state / "dnsmasq-custom.conf"
        custom.write_text(custom_dnsmasq_config(world))
        launcher.start("dnsmasq-custom", vpc_ns, ["dnsmasq", f"--conf-file={custom}"])
    if latency:
        launcher.start("dns-delay", vpc_ns, [sys.executable, "-m", "tests.lab.dns_delay",
                                             "--upstream", DNSMASQ_LOOPBACK, "--delay-ms", str(latency)]
                       + [a for ip in RESOLVER_IPS for a in ("--listen", ip)])


def wait(launcher: Launcher, vpc_ns: str, world: World) -> None:
    wait_until("dnsmasq", dns_ready(vpc_ns, DNSMASQ_LOOPBACK if world.scenario.resolver_latency_ms
                                    else RESOLVER_IPS[0]),
               5.0, lambda: launcher.check_alive("dnsmasq"))
    for ip in world.scenario.dhcp_options.custom_servers:
        wait_until("the custom DNS server", dns_ready(vpc_ns, ip), 5.0, lambda: launcher.check_alive("dnsmasq-custom"))
    delay_s = world.scenario.resolver_latency_ms / 1000
    if delay_s:
        wait_until("the resolver's delay forwarder", dns_ready(vpc_ns, RESOLVER_IPS[0], timeout=0.5 + delay_s),
                   5.0 + delay_s, lambda: launcher.check_alive("dns-delay"))


def restart(launcher: Launcher, vpc_ns: str, world: World, old_pid: Optional[int]) -> bool:
    """Gives a running lab's resolver the answers ``world`` implies: writes dnsmasq.conf, stops the
    old dnsmasq (``old_pid``, verified by the caller) and starts a new one, waiting (bounded) until it
    answers. Queries in the few milliseconds between get no answer (the client retries or times out).
    The delaying forwarder, if any, stays. Returns False when the configuration is unchanged."""
    conf = launcher.state_dir / "dnsmasq.conf"
    text = dnsmasq_config(world, listen_addresses(world))
    try:
        unchanged = conf.read_text() == text
    except OSError:
        unchanged = False
    if unchanged and old_pid is not None:
        return False
    tmp = conf.with_name(conf.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, conf)
    if old_pid is not None:
        terminate([old_pid])  # it must release the addresses before the new one binds them
    launcher.start("dnsmasq", vpc_ns, ["dnsmasq", f"--conf-file={conf}"])
    wait_until("dnsmasq", dns_ready(vpc_ns, listen_addresses(world)[0]), 5.0,
               lambda: launcher.check_alive("dnsmasq"))
    return True
