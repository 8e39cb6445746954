"""What sits between the instance and the endpoints' TLS (issue 12): the scenario keys
``tls_inspection``, ``instance_ca_bundle`` and ``path_mtu``, and how the lab builds them.

    tls_inspection: [ssm, ec2messages]          # a TLS-inspecting firewall answers 443 on their ENIs
    instance_ca_bundle: missing_amazon_root     # the instance's CA bundle lacks the lab's Amazon root
    path_mtu: 1500                              # bigger packets from the ENIs toward the instance vanish

* ``tls_inspection``: the AWS layer leaves those ENIs alone (world.json ``listen_ips``); tls_front.py
  owns TCP 443 there and presents a leaf for the service names re-signed by its own CA ("Corp TLS
  Inspection CA", certs.py), relaying what it decrypts to the service, as such an appliance does. The
  instance's packets still cross the router (security groups, NACLs and unreachable AZs still apply).
* ``instance_ca_bundle``: ``missing_amazon_root`` writes ``<state>/instance-ca.pem`` holding another
  organisation's root only; programs on the instance get it as AWS_CA_BUNDLE (``lab.instance_env``)
  and the fake SSM agent trusts it instead of ``ca.pem``.
* ``path_mtu: N``: both ends of the veth get EC2's MTU 9001, so each side advertises an MSS of 8961;
  an nftables table of its own (``vpce_lab_mtu``) in the VPC namespace drops, in the output hook,
  packets from the endpoint ENIs toward the instance that are longer than N bytes (``meta length``:
  the IP packet), silently, with no ICMP "fragmentation needed" — a path-MTU black hole. SYN, ACK and
  ClientHello are small, so TCP connects and the server's certificate flight vanishes; a connection
  that advertises an MSS of at most N - 40 gets through.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Optional, Tuple

if TYPE_CHECKING:  # world imports scenario, which imports this module
    from .processes import Launcher
    from .topology import Names
    from .world import World

CA_BUNDLE_MODES = ("ok", "missing_amazon_root")
EC2_MTU = 9001
PATH_MTU_RANGE = (1280, EC2_MTU - 1)  # at least IPv6's minimum link MTU: the agent's small MSS must fit
MTU_TABLE = "vpce_lab_mtu"
FRONT_PORT = 443
FRONT_READY_TIMEOUT_S = 10.0

Fail = Callable[[str, str], None]


def parse_inspection(data: Any, fail: Fail, services: Collection[str]) -> Tuple[str, ...]:
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data) or len(set(data)) != len(data):
        fail("tls_inspection", f"expected a list of distinct interface endpoint services, got {data!r}")
    for service in data:
        if service not in services:
            fail("tls_inspection", f"{service}: not an interface endpoint service of this scenario "
                                   f"({', '.join(sorted(services))})")
    return tuple(data)


def parse_ca_bundle(data: Any, fail: Fail) -> str:
    value = "ok" if data is None else data
    if value not in CA_BUNDLE_MODES:
        fail("instance_ca_bundle", f"expected one of {', '.join(CA_BUNDLE_MODES)}, got {data!r}")
    return str(value)


def parse_path_mtu(data: Any, fail: Fail) -> Optional[int]:
    if data is None:
        return None
    lo, hi = PATH_MTU_RANGE
    if isinstance(data, bool) or not isinstance(data, int) or not lo <= data <= hi:
        fail("path_mtu", f"expected an integer {lo}..{hi} (the largest packet the path carries), got {data!r}")
    return data


def inspected_ips(world: "World") -> Tuple[str, ...]:
    """ENI addresses the inspection front answers for (the AWS layer does not listen there)."""
    wanted = set(world.scenario.tls_inspection)
    return tuple(e.ip for s in world.services if s.name in wanted for e in s.enis)


def instance_bundle(state_dir: Path) -> Path:
    """The CA bundle programs on the instance trust (AWS_CA_BUNDLE, the fake agent's --ca)."""
    broken = state_dir / "instance-ca.pem"
    return broken if broken.exists() else state_dir / "ca.pem"


def mtu_ruleset(world: "World", router_if: str) -> str:
    mtu = world.scenario.path_mtu
    ips = ", ".join(world.eni_ips)
    if mtu is None or not ips:
        return ""
    return (f"table inet {MTU_TABLE} {{\n"
            f"  chain toward_instance {{\n"
            f"    type filter hook output priority filter; policy accept;\n"
            f'    oifname "{router_if}" ip saddr {{ {ips} }} meta length > {mtu} drop '
            f'comment "path MTU {mtu}: bigger packets vanish, no ICMP fragmentation-needed"\n'
            f"  }}\n}}\n")


def setup(names: "Names", world: "World", state_dir: Path) -> None:
    """Files and network state the three knobs need (after topology.create)."""
    from . import certs
    from .topology import INSTANCE_IF, ROUTER_IF, run

    sc = world.scenario
    if sc.instance_ca_bundle != "ok":
        certs.write_instance_bundle(state_dir, sc.instance_ca_bundle)
    if sc.tls_inspection:
        certs.write_inspection(state_dir, [s.hostname for s in world.services if s.name in sc.tls_inspection])
    rules = mtu_ruleset(world, ROUTER_IF)
    if rules:
        run(["ip", "-n", names.instance_ns, "link", "set", INSTANCE_IF, "mtu", str(EC2_MTU)])
        run(["ip", "-n", names.vpc_ns, "link", "set", ROUTER_IF, "mtu", str(EC2_MTU)])
        path = state_dir / "path-mtu.nft"
        path.write_text(rules)
        run(["ip", "netns", "exec", names.vpc_ns, "nft", "-f", str(path)])


def start_front(launcher: "Launcher", names: "Names", world: "World") -> None:
    """The inspection front (tls_front.py), ready to accept when this returns."""
    import sys

    from .processes import tcp_ready, wait_until

    ips = inspected_ips(world)
    if not ips:
        return
    state = launcher.state_dir
    by_ip = {e.ip: s for s in world.services for e in s.enis}
    argv = [sys.executable, "-m", "tests.lab.tls_front", "--cert", str(state / "inspect.pem"),
            "--key", str(state / "inspect.key"), "--ca", str(state / "ca.pem")]
    for ip in ips:
        argv += ["--intercept", f"{ip}={by_ip[ip].hostname}={by_ip[ip].public_ip}"]
    launcher.start("tls-front", names.vpc_ns, argv)
    wait_until("the TLS-inspection front", tcp_ready(names.vpc_ns, ips[0], FRONT_PORT), FRONT_READY_TIMEOUT_S,
               lambda: launcher.check_alive("tls-front"))
