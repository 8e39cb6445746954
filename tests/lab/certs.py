"""The lab CA and the one server certificate every lab TLS listener presents.

A fresh CA per lab (ECDSA: milliseconds to make), so nothing outside the state dir ever trusts it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Tuple

import trustme

from .world import DOMAIN, GOOGLE_NAMES

# docs/lab-contract.md "TLS"; a wildcard covers one label only, so dotted service names
# (api.ecr.us-east-1…) are added by name from the world.
CONTRACT_NAMES = (
    f"*.us-east-1.{DOMAIN}", f"s3.us-east-1.{DOMAIN}", f"*.s3.us-east-1.{DOMAIN}",
    f"s3.{DOMAIN}", f"*.s3.{DOMAIN}", f"*.s3.us-west-2.{DOMAIN}", f"s3.us-west-2.{DOMAIN}",
) + GOOGLE_NAMES


def write(state_dir: Path, service_hostnames: Iterable[str]) -> Tuple[Path, Path, Path]:
    """Writes ca.pem, server.pem (leaf + chain) and server.key; returns their paths."""
    names = tuple(dict.fromkeys(CONTRACT_NAMES + tuple(service_hostnames)))
    ca = trustme.CA(organization_name="vpce-doctor lab CA")
    leaf = ca.issue_cert(*names, common_name=f"lab.{DOMAIN}")
    ca_pem, cert_pem, key_pem = state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_pem))
    key_pem.chmod(0o600)
    return ca_pem, cert_pem, key_pem
