"""Service hostnames from botocore's endpoint data, for the instance's partition (offline)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Optional

# ec2messages and ssmmessages have no botocore model; the partition's template gives their names.
_DEFAULT_TEMPLATE = "{service}.{region}.{dnsSuffix}"


@lru_cache(maxsize=1)
def _endpoint_data() -> Dict[str, Any]:
    from .awsclient import shared_loader  # the clients' loader: endpoints.json is read (and held) once

    return shared_loader().load_data("endpoints")


def _partition_for(region: str) -> Optional[Dict[str, Any]]:
    import re

    for p in _endpoint_data()["partitions"]:
        if region in p.get("regions", {}) or re.match(p.get("regionRegex", "^$"), region):
            return p
    return None


def dns_suffix(region: str) -> str:
    p = _partition_for(region)
    return p["dnsSuffix"] if p else "amazonaws.com"


def partition_name(region: str) -> str:
    p = _partition_for(region)
    return p["partition"] if p else "aws"


@lru_cache(maxsize=256)  # a pure function of its arguments and botocore's data: asked every cycle
def service_hostname(service: str, region: str, fips: bool = False) -> str:
    """``ssm.us-east-1.amazonaws.com``; ``ssm.cn-north-1.amazonaws.com.cn``; FIPS variants when asked.

    Uses botocore's EndpointResolver (handles partitions and per-service hostname overrides);
    falls back to the partition's default template for services botocore doesn't model.
    """
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(_endpoint_data())
    # Endpoint service names like "ecr.api" / "sagemaker.runtime" are botocore's "api.ecr" /
    # "runtime.sagemaker" (the hostname's first labels, reversed).
    name = ".".join(reversed(service.split("."))) if "." in service else service
    endpoint = None
    try:
        if fips:
            try:  # botocore >= 1.20 knows variants
                endpoint = resolver.construct_endpoint(name, region, use_fips_endpoint=True)
            except TypeError:
                endpoint = resolver.construct_endpoint(f"{name}-fips", region)
        else:
            endpoint = resolver.construct_endpoint(name, region)
    except Exception:  # noqa: BLE001 - unknown service names raise on some versions
        endpoint = None
    if endpoint and endpoint.get("hostname"):
        return str(endpoint["hostname"])
    base = f"{name}-fips" if fips else name
    return _DEFAULT_TEMPLATE.format(service=base, region=region, dnsSuffix=dns_suffix(region))


# Interface endpoint services that botocore's endpoint data does not list (no SDK model), with the
# name the VPC endpoint uses (com.amazonaws.<region>.<name>).
UNMODELLED_SERVICES = frozenset({"ec2messages", "ssmmessages", "ecr.dkr", "s3-outposts", "execute-api",
                                 "notebook", "studio", "git-codecommit", "codecommit-fips", "git-codecommit-fips"})


@lru_cache(maxsize=16)
def known_services(partition: Optional[str] = None) -> frozenset:
    """Endpoint service short names of ``partition`` (every partition when None) in the form an
    interface endpoint uses: botocore's "api.ecr" is "ecr.api"."""
    names = set(UNMODELLED_SERVICES)
    for p in _endpoint_data()["partitions"]:
        if partition is None or p["partition"] == partition:
            for name in p.get("services", {}):
                names.add(name)
                if "." in name:
                    names.add(".".join(reversed(name.split("."))))
    return frozenset(names)

