"""The fake SSM agent's files: what the real agent leaves on an instance, under ``<state>/agent/``.

* ``fs/`` — a small tmpfs (the agent's disk): ``fs/lib`` is its data dir (/var/lib/amazon/ssm), ``fs/log``
  its log dir (/var/log/amazon/ssm). ``disk_full`` fills it as a real full disk is: writes until ENOSPC.
* ``bin/amazon-ssm-agent`` — answers ``-version`` with the real agent's line ``SSM Agent version: <v>``
  (core/agent_parser.go in github:aws/amazon-ssm-agent).
* ``fs/log/*.log`` — the real agent's lines for the scenario's condition (seelog's format
  ``2006-01-02 15:04:05.0000 LEVEL msg``; the strings from core/app/agent.go, agent/agent.go,
  agent/hibernation/hibernation.go and the AWS/Go errors it logs verbatim).
* ``etc/amazon-ssm-agent.json`` — the agent's config, when the scenario gives one.
* ``systemd/amazon-ssm-agent.service.d/proxy.conf`` — the scenario's environment as a drop-in.

``config_section()`` is what the lab writes into ``agent.yaml`` (``ssm_agent:``) so the check reads
exactly these paths. The tmpfs is mounted in the host's mount namespace under the lab's state dir, so
``ip netns exec`` (which only adds a slave copy of it) shows it to the instance; ``unmount`` is run by
``down`` before the state dir is removed.
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .fake_agent_spec import AgentSpec
from .processes import LabError

TMPFS_SIZE = "4m"  # small enough to fill in a moment, big enough that a healthy disk is not "low"
INSTANCE = "i-0123456789abcdef0"
ROLE = "SSMInstanceRole"
ACCOUNT = "123456789012"


def root(state: Path) -> Path:
    return state / "agent"


def paths(state: Path) -> Dict[str, Path]:
    r = root(state)
    return {"fs": r / "fs", "data_dir": r / "fs" / "lib", "log_dir": r / "fs" / "log", "bin": r / "bin" / "amazon-ssm-agent",
            "config_file": r / "etc" / "amazon-ssm-agent.json", "dropin_dir": r / "systemd" / "amazon-ssm-agent.service.d",
            "run": r / "run"}


def config_section(state: Path) -> Dict[str, Any]:
    p = paths(state)
    return {"log_dir": str(p["log_dir"]), "data_dir": str(p["data_dir"]), "config_file": str(p["config_file"]),
            "binaries": [str(p["bin"])], "dropin_dirs": [str(p["dropin_dir"])]}


def setup(state: Path, spec: AgentSpec, region: str) -> None:
    p = paths(state)
    for d in ("bin", "config_file", "dropin_dir"):
        p[d].parent.mkdir(parents=True, exist_ok=True)
    p["fs"].mkdir(parents=True, exist_ok=True)
    _mount_tmpfs(p["fs"])
    for d in ("data_dir", "log_dir"):
        p[d].mkdir(exist_ok=True)
    if spec.version is not None:
        p["bin"].write_text(f"#!/bin/sh\n# vpce-lab: the real agent's -version answer\necho 'SSM Agent version: {spec.version}'\n")
        p["bin"].chmod(0o755)
    if spec.config is not None:
        p["config_file"].write_text(json.dumps(dict(spec.config), indent=2))
    if spec.environment:
        p["dropin_dir"].mkdir(parents=True, exist_ok=True)
        lines = [f'Environment="{k}={v}"' for k, v in spec.environment.items()]
        (p["dropin_dir"] / "proxy.conf").write_text("[Service]\n" + "\n".join(lines) + "\n")
    for name, lines in log_lines(spec, region).items():
        (p["log_dir"] / name).write_text("".join(line + "\n" for line in lines))
    uid, gid = user_ids(spec.user)
    p["run"].mkdir(exist_ok=True)
    os.chown(p["run"], uid, gid)
    if spec.disk_full:
        fill(p["data_dir"])


def user_ids(user: str) -> Tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LabError(f"ssm_agent.user: no user {user!r} on this machine (try nobody)") from None
    return entry.pw_uid, entry.pw_gid


def fill(directory: Path) -> None:
    """Writes until the filesystem says ENOSPC (bounded by the tmpfs size)."""
    block = b"\0" * 65536
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(1024):
            os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return
    finally:
        os.close(fd)
    raise LabError(f"{directory}: the agent's disk did not fill up")


def _mount_tmpfs(target: Path) -> None:
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755,nosuid,nodev", "vpce-lab-agent",
                          str(target)], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise LabError(f"cannot mount the agent's tmpfs on {target}: {out.stderr.strip() or out.returncode}")


def mounts_under(state: Path) -> List[str]:
    """Mount points at or below ``state`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(state).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=len, reverse=True)


def unmount(state: Path) -> None:
    """Every mount under the state dir; lazily, so a process still inside cannot keep it."""
    for point in mounts_under(state):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=10)


# --- the real agent's log lines ----------------------------------------------------------------

def log_lines(spec: AgentSpec, region: str) -> Dict[str, List[str]]:
    if spec.log == "none":
        return {}
    now = datetime.datetime.utcnow().replace(microsecond=0)
    clock = [now - datetime.timedelta(minutes=30)]

    def at(level: str, msg: str, step_s: int = 1) -> str:
        clock[0] += datetime.timedelta(seconds=step_s)
        return f"{clock[0]:%Y-%m-%d %H:%M:%S}.{clock[0].microsecond // 100:04d} {level} {msg}"

    version = spec.version or "3.3.987.0"
    main = [at("INFO", f"[amazon-ssm-agent] amazon-ssm-agent - v{version}"),
            at("INFO", "[amazon-ssm-agent] OS: linux, Arch: amd64"),
            at("INFO", "[amazon-ssm-agent] Starting Core Agent"),
            at("INFO", "[amazon-ssm-agent] [CredentialRefresher] credentialRefresher has started"),
            at("INFO", "[amazon-ssm-agent] [CredentialRefresher] Credentials ready")]
    errors: List[str] = []
    hibernate: List[str] = []
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{INSTANCE}"
    denied = (f"AccessDeniedException: User: {arn} is not authorized to perform: ssm:UpdateInstanceInformation on "
              f"resource: arn:aws:ec2:{region}:{ACCOUNT}:instance/{INSTANCE} because no identity-based policy allows "
              "the ssm:UpdateInstanceInformation action")
    post = f'Post "https://ssm.{region}.amazonaws.com/"'
    error_text = {
        "access_denied": denied,
        "hibernating": denied,
        "no_space": f"open /var/lib/amazon/ssm/{INSTANCE}/document/state/pending/5f3c: no space left on device",
        "proxy": f"RequestError: send request failed caused by: {post}: proxyconnect tcp: dial tcp 10.0.1.99:3128: "
                 "connect: connection refused",
        "x509": f"RequestError: send request failed caused by: {post}: x509: certificate signed by unknown authority",
        "expired_token": "ExpiredTokenException: The security token included in the request is expired",
        "clock": "InvalidSignatureException: Signature expired: 20261202T101500Z is now earlier than "
                 "20261202T102000Z (20261202T102500Z - 5 min.)",
    }.get(spec.log)
    if error_text:
        for _ in range(3):
            line = at("ERROR", f"[ssm-agent-worker] error when calling AWS APIs. error details - {error_text}", 60)
            main.append(line)
            errors.append(line.replace("ERROR [ssm-agent-worker]", "ERROR [ssm-agent-worker] [GetAwsError @ awserr.go.49]"))
    if spec.log == "hibernating":
        main.append(at("INFO", f"[ssm-agent-worker] Entering SSM Agent hibernate - {denied}"))
        hibernate = [at("INFO", "Agent is in hibernate mode. Reducing logging. Logging will be reduced to one log "
                                "per backoff period", 0)]
        interval = 300
        while interval < 3600:
            interval = min(3600, interval * 2)
            hibernate.append(at("INFO", f"Backing off health check to every {interval} seconds for {interval * 3} "
                                        "seconds.", 120))
    out = {"amazon-ssm-agent.log": main, "errors.log": errors}
    if hibernate:
        out["hibernate.log"] = hibernate
    return out
