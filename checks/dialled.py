"""What a program on this instance really dials for a name: botocore, the SSM agent and every other
client resolve through glibc (``getaddrinfo``: /etc/hosts first, then the resolv.conf nameservers),
not through the Amazon resolver the checks query directly. A diagnosis of a failed connection must
name the addresses that were dialled, and where they came from, before it blames the path.
"""
from __future__ import annotations

import ipaddress
import socket
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from . import workers
from .resolver import HOSTS_PATH, read_hosts

MAX_ADDRESSES = 8


@dataclass(frozen=True)
class Dialled:
    host: str
    addresses: Tuple[str, ...]  # IPv4, in getaddrinfo order; empty when the name did not resolve
    source: str  # "/etc/hosts" or "the system resolver"
    error: Optional[str] = None  # why nothing resolved (gaierror text or "no answer within N s")

    @property
    def pinned(self) -> bool:
        return self.source == HOSTS_PATH

    def to_evidence(self) -> dict:
        return {"host": self.host, "addresses": list(self.addresses), "source": self.source,
                **({"error": self.error} if self.error else {})}


def host_of(url: Optional[str]) -> Optional[str]:
    """The host of an endpoint URL ("https://b.s3.us-east-1.amazonaws.com/k" -> "b.s3…")."""
    if not url:
        return None
    try:
        return urlsplit(str(url)).hostname
    except ValueError:
        return None


def failed_host(exc: BaseException) -> Optional[str]:
    """The host botocore tried to reach, from its connection error (``endpoint_url`` kwarg)."""
    kwargs: Any = getattr(exc, "kwargs", None) or {}
    return host_of(kwargs.get("endpoint_url")) if isinstance(kwargs, dict) else None


def resolve(host: str, timeout_s: float, hosts_path: str = HOSTS_PATH) -> Dialled:
    """``getaddrinfo(host, 443)`` as a client would, bounded by ``timeout_s`` (getaddrinfo itself has
    no timeout: it runs in a worker that is abandoned when it overruns)."""
    source = HOSTS_PATH if host.lower().rstrip(".") in read_hosts(hosts_path) else "the system resolver"
    future = workers.run(socket.getaddrinfo, host, 443, socket.AF_INET, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(0.05, timeout_s))
    except futures.TimeoutError:
        return Dialled(host, (), source, f"no answer within {timeout_s:g} s")
    except (OSError, UnicodeError) as exc:
        return Dialled(host, (), source, str(exc))
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))[:MAX_ADDRESSES]
    return Dialled(host, addresses, source)


def same_destination(dialled: Sequence[str], amazon: Sequence[str], pinned: bool,
                     inside_expected: Optional[Sequence[Any]] = None) -> bool:
    """Do the dialled addresses lead where the Amazon resolver's answers lead? Public AWS names are
    load-balanced (two queries give different sets), so public answers agree when both lie in the
    expected ranges (the service's prefix list) or, without those, when neither side is pinned."""
    if set(dialled) == set(amazon):
        return True
    if not dialled or not amazon:
        return False
    if inside_expected:
        return all(any(ipaddress.ip_address(a) in n for n in inside_expected) for a in dialled)
    return not pinned
