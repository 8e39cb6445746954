"""Bringing a lab up and down, and running commands on its instance.

``up`` builds everything from one scenario and tears it all down again if any step fails;
``down`` is idempotent and safe to run at any time (it is what every exit path calls).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import yaml

from . import agent_files, certs, dns, dnsknobs, firewall, ipv6lab, tlspath, topology
from .processes import (REPO_ROOT, Launcher, LabError, file_says, netns_pids, recorded_pids, tcp_ready,
                        terminate, wait_until)
from .scenario import Scenario, load
from .topology import Names
from .world import GOOGLE_IP, IMDS_IP, INSTANCE_IP, RESOLVER_IPS, World, build

AWS_MODES = ("real", "stub")
AWS_READY_TIMEOUT_S = 60.0  # moto imports take a few seconds on a cold cache
SERVICE_READY_TIMEOUT_S = 10.0
REQUIRED_TOOLS = {"ip": "iproute2", "nft": "nftables", "dnsmasq": "dnsmasq-base", "bash": "bash"}
DEFAULT_NAME = "lab"
SSM_AGENT_SERVICES = ("ssm", "ec2messages", "ssmmessages")
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


def default_name() -> str:
    return os.environ.get("VPCE_LAB_NAME") or DEFAULT_NAME


def preflight() -> None:
    """One clear line when the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces and nftables need CAP_NET_ADMIN); run it with sudo")
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    # ip and nft live in sbin, which a non-login root shell may not have on PATH.
    os.environ["PATH"] = os.pathsep.join(path + [d for d in ("/usr/sbin", "/sbin") if d not in path])
    for tool, package in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            raise LabError(f"'{tool}' is not installed: apt-get install {package}")


@dataclass(frozen=True)
class Lab:
    """A lab that is up."""

    names: Names
    world: World
    aws: str
    up_s: float

    @property
    def state_dir(self) -> Path:
        return self.names.state_dir

    @property
    def agent_config(self) -> Optional[Path]:
        path = self.state_dir / "agent.yaml"
        return path if path.exists() else None


def up(scenario: Union[Scenario, Path], name: Optional[str] = None, aws: str = "real",
       log: Optional[Callable[[str], None]] = None) -> Lab:
    """Builds the lab for ``scenario``; on any failure (or Ctrl-C) removes whatever was built."""
    preflight()
    started = time.monotonic()
    sc = scenario if isinstance(scenario, Scenario) else load(Path(scenario))
    names = Names(name or default_name())
    world = build(sc, names.lab)
    if aws not in AWS_MODES:
        raise LabError(f"--aws must be one of {', '.join(AWS_MODES)}")
    if aws == "real" and not (REPO_ROOT / "tests" / "lab" / "aws" / "__main__.py").exists():
        raise LabError("the AWS layer (tests/lab/aws) is not there; use --aws stub to test the network alone")
    if down(names.lab) and log:
        log(f"lab '{names.lab}' was up: tore it down first")
    try:
        _build(names, world, aws)
    except BaseException:
        down(names.lab)
        raise
    return Lab(names=names, world=world, aws=aws, up_s=time.monotonic() - started)


def _build(names: Names, world: World, aws: str) -> None:
    sc = world.scenario
    state = names.state_dir
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    world_path = world.write(state)
    _, cert, key = certs.write(state, (s.hostname for s in world.services))
    agent_files.setup(state, sc.ssm_agent, sc.region)
    (state / "agent.yaml").write_text(yaml.safe_dump(_agent_yaml(state, sc.agent_config), sort_keys=False))
    (state / "lab.json").write_text(json.dumps({
        "lab": names.lab, "scenario": sc.name, "source": str(sc.source) if sc.source else None, "aws": aws,
        "namespaces": list(names.namespaces)}, indent=1))
    _write_instance_etc(names, world)

    topology.create(names, world)
    firewall.apply(names.vpc_ns, world, state)
    tlspath.setup(names, world, state)  # CA bundle, inspection certificate, path MTU

    launcher = Launcher(state)
    python = sys.executable
    aws_module = "tests.lab.aws" if aws == "real" else "tests.lab.aws_stub"
    # The AWS layer is the slowest to start: launch it first, the others come up meanwhile.
    launcher.start("aws", names.vpc_ns, [python, "-m", aws_module, "--world", str(world_path),
                                         "--state-dir", str(state)])
    dns.start(launcher, names.vpc_ns, world)
    launcher.start("internet", names.vpc_ns, [python, "-m", "tests.lab.internet", "--listen", GOOGLE_IP,
                                              "--cert", str(cert), "--key", str(key)])
    dns.wait(launcher, names.vpc_ns, world)
    wait_until("the internet stand-in", tcp_ready(names.vpc_ns, GOOGLE_IP, 443), SERVICE_READY_TIMEOUT_S,
               lambda: launcher.check_alive("internet"))
    tlspath.start_front(launcher, names, world)  # only with tls_inspection
    wait_until(f"the AWS layer ({aws_module})", file_says(launcher.log_path("aws"), "READY"),
               AWS_READY_TIMEOUT_S, lambda: launcher.check_alive("aws"))
    if not (state / "aws-ids.json").exists():
        raise LabError(f"the AWS layer said READY but wrote no {state / 'aws-ids.json'}")

    # IMDS serves the ids the AWS layer just created.
    launcher.start("imds", names.vpc_ns, [python, "-m", "tests.lab.imds", "--state-dir", str(state),
                                          "--mode", sc.imds] + (["--listen6", ipv6lab.IMDS6] if sc.ipv6 != "none" else []))
    if sc.ssm_agent != "stopped":
        _start_fake_ssm_agent(launcher, names, world)
    wait_until("IMDS", tcp_ready(names.vpc_ns, IMDS_IP, 80), SERVICE_READY_TIMEOUT_S,
               lambda: launcher.check_alive("imds"))
    if sc.ssm_agent != "stopped":
        wait_until("the fake SSM agent", _ssm_agent_ready(state), SERVICE_READY_TIMEOUT_S,
                   lambda: launcher.check_alive("amazon-ssm-agent"))


def _write_instance_etc(names: Names, world: World) -> None:
    """`ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc/*: the instance's own DNS config."""
    etc = names.etc_dir(names.instance_ns)
    etc.mkdir(parents=True, exist_ok=True)
    servers = "".join(f"nameserver {ip}\n" for ip in ipv6lab.resolv_conf(world, world.scenario.resolv_conf_nameservers))
    (etc / "resolv.conf").write_text(f"# vpce-doctor lab (the Amazon resolver is {RESOLVER_IPS[0]})\n{servers}"
                                     f"options timeout:{dnsknobs.RESOLV_CONF_TIMEOUT_S} attempts:2\n")
    hostname = f"ip-{INSTANCE_IP.replace('.', '-')}"
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
             f"{INSTANCE_IP} {hostname}.ec2.internal {hostname}"]
    lines += [f"{ip} {host}" for host, ip in world.scenario.etc_hosts.items()]
    (etc / "hosts").write_text("\n".join(lines) + "\n")


def _agent_yaml(state: Path, scenario_config: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The scenario's agent_config with the fake agent's paths as ``ssm_agent:`` (its keys win)."""
    config = dict(scenario_config or {})
    config["ssm_agent"] = {**agent_files.config_section(state), **dict(config.get("ssm_agent") or {})}
    # The daemon on the lab's instance: its state and the agent's inventory folder live in the lab.
    config["daemon"] = {"state_dir": str(state / "daemon"), **dict(config.get("daemon") or {})}
    publish = dict(config.get("publish") or {})
    publish["inventory_file"] = {"root": str(agent_files.paths(state)["data_dir"]),
                                 **dict(publish.get("inventory_file") or {})}
    config["publish"] = publish
    return config


def _start_fake_ssm_agent(launcher: Launcher, names: Names, world: World) -> None:
    spec = world.scenario.ssm_agent
    targets = [f"{s.name}={s.hostname}={','.join(ipv6lab.instance_answers(world, s.name))}"
               for s in world.services if s.name in SSM_AGENT_SERVICES]
    mode = "running" if spec.state == "running" else "not_connected"
    argv = [sys.executable, "-m", "tests.lab.fake_ssm_agent", "--status-dir",
            str(agent_files.paths(launcher.state_dir)["run"]), "--mode", mode, "--user", spec.user,
            "--ca", str(tlspath.instance_bundle(launcher.state_dir))]
    argv += [a for t in targets for a in ("--target", t)]
    # Its environment is its unit's: no proxies of the host, the scenario's (a drop-in) instead.
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(spec.environment)
    launcher.start("amazon-ssm-agent", names.instance_ns, argv, argv0="/usr/bin/amazon-ssm-agent", env=env)


def _ssm_agent_ready(state: Path) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return bool(json.loads((agent_files.paths(state)["run"] / "ssm-agent.json").read_text()).get("ready"))
        except (OSError, ValueError):
            return False
    return probe


def down(name: Optional[str] = None) -> bool:
    """Kills every lab process, deletes the namespaces, /etc/netns entries and the state dir.
    Returns whether there was anything to remove."""
    names = Names(name or default_name())
    existed = topology.exists(names) or names.state_dir.exists() or any(
        names.etc_dir(ns).exists() for ns in names.namespaces)
    pids = set(recorded_pids(names.state_dir / "pids"))
    for ns in names.namespaces:
        if Path("/run/netns", ns).exists():
            pids.update(netns_pids(ns))
    terminate(pids)
    agent_files.unmount(names.state_dir)  # before rmtree: never delete through a mount point
    topology.delete(names)
    for ns in names.namespaces:
        shutil.rmtree(names.etc_dir(ns), ignore_errors=True)
    shutil.rmtree(names.state_dir, ignore_errors=True)
    for parent in (names.state_dir.parent, Path("/etc/netns")):
        try:
            parent.rmdir()  # only when empty: other labs may still be up
        except OSError:
            pass
    return existed


# --- running things on the instance ----------------------------------------------------------

def require_up(name: Optional[str] = None) -> Names:
    names = Names(name or default_name())
    if not (Path("/run/netns", names.instance_ns).exists() and (names.state_dir / "lab.json").exists()):
        raise LabError(f"lab '{names.lab}' is not up (python -m tests.lab up SCENARIO.yaml --name {names.lab})")
    return names


def instance_env(names: Names) -> Dict[str, str]:
    """The environment of a program on the instance: no AWS credentials or proxies of the host,
    the lab CA for botocore, and this interpreter's bin directory first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k.lower() not in PROXY_VARS}
    env["AWS_CA_BUNDLE"] = str(tlspath.instance_bundle(names.state_dir))  # ca.pem unless instance_ca_bundle
    # Credentials must come from IMDS, as on the instance: hide the host's ~/.aws files.
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
    return env


def instance_argv(names: Names, argv: List[str]) -> List[str]:
    return ["ip", "netns", "exec", names.instance_ns] + list(argv)
