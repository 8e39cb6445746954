"""``python -m tests.lab.aws --world WORLD.json --state-dir DIR``: run the lab's AWS layer.

Starts moto, seeds it from world.json, serves the TLS front, writes ``<state>/aws-ids.json`` and
prints ``READY`` on stdout; then runs until SIGTERM or SIGINT and stops within 2 s. Inside the lab
it runs in the VPC network namespace (started by the lab core with ``ip netns exec``); on its own,
``--listen 127.0.0.1:8443`` (repeatable, port 0 for any) keeps it on loopback.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from . import live_sync
from .layer import AwsLayer, LayerOptions, parse_address
from .world import World, WorldError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s aws-layer %(name)s %(levelname)s %(message)s")
    logging.getLogger("vpce_lab").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # moto's per-request access log (werkzeug) only with --verbose; botocore's debug log never.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        world = World.load(args.world)
        options = LayerOptions(
            listen=[parse_address(a) for a in args.listen],
            moto_port=args.moto_port,
            cert=args.cert,
            key=args.key,
            fleet_size=args.fleet_size,
            managed_instances=_managed_instances(args.managed_instance, args.fleet_file),
            endpoint_listen=[_endpoint_listen(a) for a in args.endpoint_listen],
        )
    except (OSError, ValueError, WorldError) as exc:
        print(f"aws-layer: {exc}", file=sys.stderr)
        return EXIT_USAGE

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    live = threading.Event()  # SIGHUP: `python -m tests.lab set` changed the world (live_sync)
    signal.signal(signal.SIGHUP, lambda *_: live.set())

    layer = AwsLayer(world, args.state_dir, options)
    try:
        layer.start()
    except Exception as exc:  # report any startup failure in one line, then clean up
        logging.getLogger("vpce_lab.aws").debug("startup failed", exc_info=True)
        print(f"aws-layer: startup failed: {exc}", file=sys.stderr)
        layer.stop()
        return EXIT_FAILED
    print("READY", flush=True)
    try:
        while not stop.wait(0.2):
            if live.is_set():
                live.clear()
                layer.world = live_sync.handle(Path(args.state_dir), layer.world, layer.ids)
    finally:
        layer.stop()
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.aws", description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, required=True, help="world.json written by the lab core")
    parser.add_argument("--state-dir", type=Path, required=True, help="where aws-ids.json and inventory.json go")
    parser.add_argument("--listen", action="append", default=[], metavar="HOST:PORT",
                        help="listen here instead of world listen_ips on 443 (repeatable; port 0 = any)")
    parser.add_argument("--moto-port", type=int, default=0, help="moto's port on 127.0.0.1 (default: any)")
    parser.add_argument("--cert", help="server certificate (default: world cert)")
    parser.add_argument("--key", help="server key (default: world key)")
    parser.add_argument("--fleet-size", type=int, default=0,
                        help="launch this many more instances in moto and register them with SSM")
    parser.add_argument("--fleet-file", type=Path,
                        help="JSON list of instance ids (or one per line) to register with SSM")
    parser.add_argument("--managed-instance", action="append", default=[], metavar="INSTANCE_ID",
                        help="register this instance id with SSM too (repeatable)")
    parser.add_argument("--endpoint-listen", action="append", default=[], metavar="SVC=HOST:PORT",
                        help="listen here too, as an ENI of SVC's interface endpoint (its policy applies)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def _endpoint_listen(text: str) -> Tuple[str, Tuple[str, int]]:
    service, sep, address = text.partition("=")
    if not sep or not service:
        raise ValueError(f"--endpoint-listen {text!r}: expected SVC=HOST:PORT")
    return service, parse_address(address)


def _managed_instances(ids: List[str], fleet_file: Optional[Path]) -> List[str]:
    result = list(ids)
    if fleet_file is not None:
        text = fleet_file.read_text()
        try:
            loaded = json.loads(text)
            result += list(loaded["instance_ids"] if isinstance(loaded, dict) else loaded)
        except ValueError:
            result += [line.strip() for line in text.splitlines() if line.strip()]
    return result
