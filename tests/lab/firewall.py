"""The VPC's router and security groups, as one nftables table in the VPC namespace.

Security groups are enforced on the VPC side of the veth, as the hypervisor does on EC2: a blocked
connection is a silent drop, so the agent sees a timeout — never EPERM (which a rule in the
instance's own namespace would give) and never an RST. The route table is modelled the way a VPC
behaves too: the instance keeps its default route and the router drops what has no route.
Traffic to the Amazon resolver and IMDS is exempt from security groups (link-local / resolver).

Statefulness, which matters when ``python -m tests.lab set`` changes the rules of a running lab
(``replace``): security groups are stateful, so a rule removed later leaves connections that are
already tracked alone (as AWS documents); unreachable ENIs stand for a NACL, which is stateless, so
their drop comes before the ``established`` accept and stalls open connections too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List

from . import ipv6lab, nacl
from .ddbknobs import DYNAMODB_PREFIX_LIST
from .topology import ROUTER_IF, run
from .world import GOOGLE_IP, LINK_LOCAL, PUBLIC_NETS, RESOLVER_IPS, S3_PREFIX_LIST, SUBNETS, VPC_CIDR, World

TABLE = "vpce_lab"
INSTANCE_SUBNET = "a"
# AWS: NACLs never filter traffic to the Amazon DNS server or the instance metadata service.
NACL_EXEMPT = RESOLVER_IPS + (LINK_LOCAL,)


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def ruleset(world: World) -> str:
    sc = world.scenario
    rules: List[str] = [
        f'iifname != "{ROUTER_IF}" accept comment "only traffic from the instance crosses the VPC"',
    ]
    if world.unreachable_eni_ips:  # a NACL: stateless, so before the established accept
        rules.append(f"ip daddr {_set(world.unreachable_eni_ips)} drop comment \"ENIs of unreachable AZs\"")
    rules += ipv6lab.firewall_unreachable_rules(world)
    rules += nacl.jumps(sc.nacls, SUBNETS, INSTANCE_SUBNET, NACL_EXEMPT, toward_instance=False)
    rules.append("ct state established,related accept")
    if not sc.enable_dns_support:
        rules.append(f"ip daddr {_set(RESOLVER_IPS)} meta l4proto {{ tcp, udp }} th dport 53 drop "
                     f'comment "enableDnsSupport=false: the resolver does not answer"')
    if not sc.instance_sg_outbound_443:
        rules.append('tcp dport 443 drop comment "instance SG: no outbound TCP 443"')
    if sc.instance_sg_outbound_443_to == "vpc":
        rules.append(f'ip daddr != {VPC_CIDR} tcp dport 443 drop comment "instance SG: outbound 443 to the VPC CIDR only"')
    if not sc.endpoint_sg_inbound_443 and world.eni_ips:
        rules.append(f"ip daddr {_set(world.eni_ips)} tcp dport 443 drop "
                     f'comment "endpoint SG: no inbound TCP 443"')
    rules += ipv6lab.firewall_sg_rules(world)
    # The subnet's route table.
    rules.append(f'ip daddr {_set((VPC_CIDR, LINK_LOCAL))} accept comment "local; IMDS and resolver"')
    rules += ipv6lab.firewall_route_rules(world)
    if world.s3_routed:
        rules.append(f'ip daddr {S3_PREFIX_LIST} accept comment "S3 prefix list -> gateway endpoint"')
    if sc.dynamodb.routed:
        rules.append(f'ip daddr {DYNAMODB_PREFIX_LIST} accept comment "DynamoDB prefix list -> gateway endpoint"')
    if sc.internet != "none":
        if sc.internet_443 == "closed":  # what a host whose port is closed does: its kernel answers RST
            rules.append(f'ip daddr {GOOGLE_IP} tcp dport 443 reject with tcp reset '
                         f'comment "internet_443: closed (the host refuses the port)"')
        rules.append(f'ip daddr {_set(PUBLIC_NETS)} accept comment "0.0.0.0/0 -> {sc.internet}"')
    rules.append('drop comment "no route: a VPC drops it (the client times out)"')
    body = "\n".join(f"    {r}" for r in rules)
    # NACL chains first: nft resolves a jump's target when it reads the jump
    text = (f"table inet {TABLE} {{\n" + nacl.chains(sc.nacls) +
            f"  chain from_instance {{\n"
            f"    type filter hook input priority filter; policy accept;\n"
            f"{body}\n  }}\n")
    if sc.nacls:  # NACLs are stateless: what comes back to the instance is judged too
        back = "\n".join(f"    {r}" for r in nacl.jumps(sc.nacls, SUBNETS, INSTANCE_SUBNET, NACL_EXEMPT,
                                                          toward_instance=True))
        text += (f"  chain to_instance {{\n"
                 f"    type filter hook output priority filter; policy accept;\n"
                 f'    oifname != "{ROUTER_IF}" accept\n{back}\n  }}\n')
    return text + "}\n"


def apply(vpc_ns: str, world: World, state_dir: Path) -> None:
    path = state_dir / "router.nft"
    path.write_text(ruleset(world))
    run(["ip", "netns", "exec", vpc_ns, "nft", "-f", str(path)])


def replace(vpc_ns: str, world: World, state_dir: Path) -> bool:
    """Swaps the ruleset of a running lab for the one ``world`` implies, in one nft transaction
    (the old table is deleted and the new one created atomically: no packet ever sees no rules).
    Returns False when the rules in force are already these."""
    text = ruleset(world)
    path = state_dir / "router.nft"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    swap = state_dir / "router.nft.swap"
    swap.write_text(f"add table inet {TABLE}\ndelete table inet {TABLE}\n{text}")
    run(["ip", "netns", "exec", vpc_ns, "nft", "-f", str(swap)])
    tmp = state_dir / "router.nft.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)  # router.nft keeps showing the rules in force
    swap.unlink()
    return True
