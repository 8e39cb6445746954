"""Namespaces, the veth between them, and the addresses of everything AWS.

    vdl-<name>-i  ens5 10.0.1.10/24, default via 10.0.1.1     (the instance; no public IP)
    vdl-<name>-v  vpc-rtr 10.0.1.1/24 + aws0 with every AWS /32  (router, resolver, IMDS, ENIs, …)

Every AWS address is local to the VPC namespace, so nothing is forwarded (ip_forward stays 0) and
the router's rules sit in its input hook. The VPC side of the veth answers ARP for all of them
(Linux's weak host model), so ENIs in 10.0.1.0/24 are on-link for the instance, as on EC2.
Neither namespace is ever connected to the host's.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from .processes import LabError
from . import ipv6lab
from .world import INSTANCE_IP, INSTANCE_MAC, INSTANCE_PREFIX, ROUTER_IP, World

INSTANCE_IF = "ens5"  # what a Nitro instance calls its first NIC
ROUTER_IF = "vpc-rtr"
AWS_IF = "aws0"


@dataclass(frozen=True)
class Names:
    lab: str

    @property
    def instance_ns(self) -> str:
        return f"vdl-{self.lab}-i"

    @property
    def vpc_ns(self) -> str:
        return f"vdl-{self.lab}-v"

    @property
    def namespaces(self) -> tuple:
        return (self.instance_ns, self.vpc_ns)

    @property
    def state_dir(self) -> Path:
        return Path("/run/vpce-lab") / self.lab

    def etc_dir(self, netns: str) -> Path:
        return Path("/etc/netns") / netns


def run(argv: Sequence[str], stdin: str = "") -> None:
    out = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise LabError(f"{' '.join(argv[:6])}: {detail[-1] if detail else f'exit {out.returncode}'}")


def batch(netns: str, commands: List[str]) -> None:
    """One `ip` process for many commands (each fork+exec costs milliseconds)."""
    run(["ip", "-n", netns, "-batch", "-"], stdin="\n".join(commands) + "\n")


def create(names: Names, world: World) -> None:
    for ns in names.namespaces:
        run(["ip", "netns", "add", ns])
    # Both ends are created directly inside their namespaces: no name ever exists in the host's.
    run(["ip", "link", "add", INSTANCE_IF, "netns", names.instance_ns, "address", INSTANCE_MAC,
         "type", "veth", "peer", "name", ROUTER_IF, "netns", names.vpc_ns])
    _add_dummy(names.vpc_ns)
    batch(names.vpc_ns, [
        "link set lo up",
        f"link set {AWS_IF} up",
        f"link set {ROUTER_IF} up",
        f"address add {ROUTER_IP}/{INSTANCE_PREFIX} dev {ROUTER_IF}",
    ] + [f"address add {ip}/32 dev {AWS_IF}" for ip in world.vpc_addresses4])
    batch(names.instance_ns, ipv6lab.instance_ipv4(world, [  # an IPv6-only ENI has no IPv4 at all
        "link set lo up",
        f"link set {INSTANCE_IF} up",
        f"address add {INSTANCE_IP}/{INSTANCE_PREFIX} dev {INSTANCE_IF}",
        f"route add default via {ROUTER_IP} dev {INSTANCE_IF}",
    ]))
    vpc6, instance6 = ipv6lab.topology_commands(world)  # nothing unless the scenario turns IPv6 on
    if vpc6:
        batch(names.vpc_ns, vpc6)
        batch(names.instance_ns, instance6)


def _add_dummy(vpc_ns: str) -> None:
    """A dummy interface holds the AWS /32s. Kernels without the dummy module get a bridge with
    no ports instead, which behaves the same for local addresses."""
    try:
        run(["ip", "-n", vpc_ns, "link", "add", AWS_IF, "type", "dummy"])
    except LabError:
        run(["ip", "-n", vpc_ns, "link", "add", AWS_IF, "type", "bridge"])


def exists(names: Names) -> bool:
    return any(Path("/run/netns", ns).exists() for ns in names.namespaces)


def delete(names: Names) -> None:
    """Removes the namespaces (their veth goes with them); tolerates ones that are already gone."""
    for ns in names.namespaces:
        if Path("/run/netns", ns).exists():
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        if Path("/run/netns", ns).exists():
            raise LabError(f"cannot delete network namespace {ns}")
