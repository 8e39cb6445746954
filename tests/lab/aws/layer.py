"""The whole AWS layer: moto in-process, seeded from world.json, behind the TLS front."""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from .authz import Authorizer
from .front import Address, Front, Interceptor
from .inventory import OPERATIONS, InventoryError, InventoryService, ManagedInstance
from .protocol import Reply, Request, json_error, json_reply
from .s3_policy import S3Policy
from .seed import ACCOUNT_ID, ADMIN_KEY, AwsIds, InstanceIdentity, ec2_backend, seed
from .session_prefs import SsmInstanceApi, seed_resources
from .world import World

log = logging.getLogger("vpce_lab.aws")

HTTPS_PORT = 443
MOTO_HOST = "127.0.0.1"  # the namespace's own loopback: moto is reachable only through the front


@dataclass(frozen=True)
class LayerOptions:
    listen: Sequence[Address] = ()            # empty: every world["listen_ips"] on 443
    moto_port: int = 0
    cert: Optional[str] = None                 # default: world["cert"] / world["key"]
    key: Optional[str] = None
    fleet_size: int = 0                        # extra instances to launch and register with SSM
    managed_instances: Sequence[str] = field(default_factory=tuple)  # ids registered with SSM as-is
    # (service, address): listen there too, as if the address were an ENI of that service's endpoint
    # (loopback tests of endpoint policies).
    endpoint_listen: Sequence[Tuple[str, Address]] = field(default_factory=tuple)


class AwsLayer:
    def __init__(self, world: World, state_dir: Path, options: LayerOptions = LayerOptions()) -> None:
        self.world = world
        self.state_dir = Path(state_dir)
        self.options = options
        self.ids: Optional[AwsIds] = None
        self.front_addresses: List[Address] = []
        self.inventory = InventoryService(ACCOUNT_ID, persist_to=self.state_dir / "inventory.json")
        self._moto: Any = None
        self._moto_started = False
        self._front: Optional[Front] = None
        self.session_resources: dict = {}

    def start(self) -> AwsIds:
        from moto.server import ThreadedMotoServer  # slow import: only when the layer really starts

        self.state_dir.mkdir(parents=True, exist_ok=True)
        _check_bindable(MOTO_HOST, self.options.moto_port)
        self._moto = ThreadedMotoServer(ip_address=MOTO_HOST, port=self.options.moto_port, verbose=False)
        self._moto.start()
        self._moto_started = True
        moto_address = self._moto.get_host_and_port()
        moto_url = "http://{}:{}".format(*moto_address)
        self.ids = ids = seed(self.world, moto_url, fleet_size=self.options.fleet_size)
        import boto3

        admin = boto3.session.Session(aws_access_key_id=ADMIN_KEY, aws_secret_access_key="lab",
                                      region_name=self.world.region)
        self.session_resources = seed_resources(self.world, admin, moto_url)

        self.inventory.register(self._managed_instances(ids))
        identity = InstanceIdentity(
            instance_id=ids.instance_id,
            role_name=ids.role_name,
            access_key_id=(ids.credentials or {}).get("AccessKeyId"),
        )
        authorizer = Authorizer(self.world, identity,
                                {host: service for service, (host, _) in self.options.endpoint_listen})
        s3_policy = S3Policy(self.world, authorizer, bucket_region=_moto_bucket_region)
        cert = self.options.cert or self.world.cert
        key = self.options.key or self.world.key
        addresses = list(self.options.listen) or [(ip, HTTPS_PORT) for ip in self.world.listen_ips]
        addresses += [address for _, address in self.options.endpoint_listen]
        if not addresses:
            raise ValueError("nothing to listen on: world.json has no listen_ips and no --listen was given")
        # Authentication and authorization first, as AWS does; then what moto lacks; then moto.
        interceptors = [authorizer.intercept, SsmInstanceApi(self.world, self.inventory).intercept,
                        ssm_inventory_interceptor(self.inventory), s3_policy.intercept]
        self._front = Front(addresses, cert, key, upstream=moto_address, interceptors=interceptors,
                            clock_offset_s=self.world.aws_clock_offset_s)
        self.front_addresses = self._front.start()
        self._write_ids(ids)
        return ids

    def stop(self) -> None:
        """Close the listeners and moto in parallel: the whole stop takes well under 2 s."""
        stoppers = []
        if self._front is not None:
            stoppers.append(threading.Thread(target=self._front.stop, daemon=True))
        if self._moto is not None and self._moto_started:
            stoppers.append(threading.Thread(target=self._moto.stop, daemon=True))
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=1.5)
        self._front = self._moto = None
        self._moto_started = False

    def _managed_instances(self, ids: AwsIds) -> List[ManagedInstance]:
        backend = ec2_backend(self.world.region)
        managed = [ManagedInstance(ids.instance_id, self.world.instance_ip)]
        managed += [ManagedInstance(i, backend.get_instance(i).private_ip) for i in ids.fleet_instance_ids]
        managed += [ManagedInstance(i) for i in self.options.managed_instances]
        return managed

    def _write_ids(self, ids: AwsIds) -> None:
        data = ids.to_json()
        # Not in the contract's list, but needed when a port was 0 (tests): where the front listens.
        data["front_addresses"] = [f"{host}:{port}" for host, port in self.front_addresses]
        if self.session_resources:  # what the Session Manager preferences name and exists: {kind: name/ARN}
            data["session_resources"] = self.session_resources
        target = self.state_dir / "aws-ids.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, target)


def _check_bindable(host: str, port: int) -> None:
    """ThreadedMotoServer binds in its own thread and waits forever if that fails: check first."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise OSError(f"cannot start moto on {host}:{port}: {exc} (is loopback up in this network "
                      "namespace? `ip link set lo up`)") from exc
    finally:
        probe.close()


def ssm_inventory_interceptor(service: InventoryService) -> Interceptor:
    """Answer the SSM inventory calls (AWS JSON 1.1, ``X-Amz-Target: AmazonSSM.<Operation>``)."""

    def intercept(request: Request) -> Optional[Reply]:
        prefix, _, operation = (request.header("X-Amz-Target") or "").partition(".")
        if prefix != "AmazonSSM" or operation not in OPERATIONS or request.method != "POST":
            return None
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return json_error("SerializationException", "The request body is not valid JSON.")
        try:
            return json_reply(service.handle(operation, payload))
        except InventoryError as exc:
            return json_error(exc.code, exc.message, **exc.members)

    return intercept


def _moto_bucket_region(bucket: str) -> Optional[str]:
    from moto.s3.models import s3_backends

    found = s3_backends[ACCOUNT_ID]["aws"].buckets.get(bucket)
    return found.region_name if found is not None else None


def parse_address(text: str) -> Tuple[str, int]:
    """``127.0.0.1:8443``, ``[::1]:8443`` or a bare host (port 443)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or HTTPS_PORT)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, HTTPS_PORT
