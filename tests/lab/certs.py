"""The lab CA and the one server certificate every lab TLS listener presents; the TLS-inspection
front's foreign CA; and the instance's CA bundle.

A fresh CA per lab (ECDSA: milliseconds to make), so nothing outside the state dir ever trusts it.
It is named like Amazon Trust Services' (root "Amazon Root CA 3", intermediate "Amazon ECDSA 256
M02", both O=Amazon), with OU=vpce-doctor lab so no one mistakes it for the real one: the agent's
issuer checks (checks/tlsprobe.py) see what they would see on EC2. The inspection front's CA is
someone else's ("Corp TLS Inspection CA"), as a firewall that re-signs TLS would present.
"""
from __future__ import annotations

import datetime
import secrets
from pathlib import Path
from typing import Iterable, Optional, Tuple

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .world import DOMAIN, GOOGLE_NAMES

# docs/lab-contract.md "TLS"; a wildcard covers one label only, so dotted service names
# (api.ecr.us-east-1…) are added by name from the world.
CONTRACT_NAMES = (
    f"*.us-east-1.{DOMAIN}", f"s3.us-east-1.{DOMAIN}", f"*.s3.us-east-1.{DOMAIN}",
    f"s3.{DOMAIN}", f"*.s3.{DOMAIN}", f"*.s3.us-west-2.{DOMAIN}", f"s3.us-west-2.{DOMAIN}",
) + GOOGLE_NAMES
LAB_UNIT = "vpce-doctor lab"
AMAZON_ROOT = ("Amazon", "Amazon Root CA 3")  # (O, CN); Amazon's ECDSA P-256 root
AMAZON_INTERMEDIATE = ("Amazon", "Amazon ECDSA 256 M02")
INSPECTION_CA = ("Corp TLS Inspection CA", "Corp TLS Inspection CA")
OTHER_ROOT = ("Corp Internal", "Corp Internal Root CA")  # what a broken instance bundle holds instead


def named_ca(organization: str, common_name: str, parent: Optional[trustme.CA] = None) -> trustme.CA:
    """A trustme CA whose subject is C=US, O=organization, OU=vpce-doctor lab, CN=common_name
    (trustme's own CAs have no CN), signed by ``parent`` or by itself; it issues like any trustme CA
    and its leaves' chains include it when it has a parent."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, LAB_UNIT),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_cert = parent._certificate if parent is not None else None  # noqa: SLF001 - trustme keeps it there
    signer_key = parent._private_key if parent is not None else key  # noqa: SLF001
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(signer_cert.subject if signer_cert is not None else subject)
               .public_key(key.public_key())
               .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
               .not_valid_before(datetime.datetime(2000, 1, 1))
               .not_valid_after(datetime.datetime(3000, 1, 1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent is None else 0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if signer_cert is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            signer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    ca = trustme.CA.from_pem(cert.public_bytes(serialization.Encoding.PEM),
                             key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    ca.parent_cert = parent
    return ca


def amazon_like_ca() -> Tuple[trustme.CA, trustme.CA]:
    """(root, intermediate), named like Amazon Trust Services'; the intermediate issues."""
    root = named_ca(*AMAZON_ROOT)
    return root, named_ca(*AMAZON_INTERMEDIATE, parent=root)


def _write_leaf(leaf: trustme.LeafCert, cert_pem: Path, key_pem: Path) -> None:
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_pem))
    key_pem.chmod(0o600)


def write(state_dir: Path, service_hostnames: Iterable[str]) -> Tuple[Path, Path, Path]:
    """Writes ca.pem (the root), server.pem (leaf + intermediate) and server.key; returns their paths."""
    names = tuple(dict.fromkeys(CONTRACT_NAMES + tuple(service_hostnames)))
    root, intermediate = amazon_like_ca()
    leaf = intermediate.issue_cert(*names, common_name=f"lab.{DOMAIN}")
    ca_pem, cert_pem, key_pem = state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server.key"
    root.cert_pem.write_to_path(str(ca_pem))
    _write_leaf(leaf, cert_pem, key_pem)
    return ca_pem, cert_pem, key_pem


def write_inspection(state_dir: Path, hostnames: Iterable[str]) -> Tuple[Path, Path]:
    """inspect.pem / inspect.key: what a TLS-inspecting firewall presents for these names (a leaf
    re-signed by its own CA, which nothing on the instance trusts); its CA in inspect-ca.pem, for
    whoever wants to trust it."""
    names = tuple(dict.fromkeys(hostnames))
    ca = named_ca(*INSPECTION_CA)
    ca.cert_pem.write_to_path(str(state_dir / "inspect-ca.pem"))
    leaf = ca.issue_cert(*names, common_name=names[0] if names else f"lab.{DOMAIN}")
    cert_pem, key_pem = state_dir / "inspect.pem", state_dir / "inspect.key"
    _write_leaf(leaf, cert_pem, key_pem)
    return cert_pem, key_pem


def write_instance_bundle(state_dir: Path, mode: str) -> Path:
    """The CA bundle the instance's programs get (AWS_CA_BUNDLE): the lab root (``ok``), or a bundle
    that lacks it and holds another organisation's root (``missing_amazon_root``)."""
    path = state_dir / "instance-ca.pem"
    if mode == "ok":
        path.write_bytes((state_dir / "ca.pem").read_bytes())
    else:
        named_ca(*OTHER_ROOT).cert_pem.write_to_path(str(path))
    return path
