"""python -m tests.lab {up,exec,set,verify,down,demo} — the lab's command line (run as root, from the repo root)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, NoReturn, Optional

from . import lab as labmod, live
from .processes import LabError
from .scenario import ScenarioError, load
from .verify import compare, run_agent, summary_line

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
DEMO_SCENARIOS = ("healthy", "endpoint-sg-no-443")
DEFAULT_AGENT = os.environ.get("VPCE_LAB_AGENT", "vpce-doctor")


def scenario_path(arg: str) -> Path:
    """A path, or the name of a shipped scenario (``healthy`` = tests/lab/scenarios/healthy.yaml)."""
    path = Path(arg)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in arg:
        return path
    return SCENARIO_DIR / f"{arg}.yaml"


def _say(msg: str) -> None:
    print(f"vpce-lab: {msg}", file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    lab = labmod.up(scenario_path(args.scenario), args.name, aws=args.aws, log=_say)
    sc = lab.world.scenario
    print(f"lab '{lab.names.lab}' up: scenario {sc.name} in {lab.up_s:.1f} s "
          f"(namespaces {' '.join(lab.names.namespaces)}, state {lab.state_dir})")
    config = f" --config {lab.agent_config}" if lab.agent_config else ""
    name = f" --name {lab.names.lab}" if lab.names.lab != labmod.DEFAULT_NAME else ""
    print(f"  run the agent:  python -m tests.lab exec{name} -- vpce-doctor check{config}")
    print(f"  tear it down:   python -m tests.lab down{name}")
    return 0


def cmd_exec(args: argparse.Namespace) -> NoReturn:
    names = labmod.require_up(args.name)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("exec needs a command: python -m tests.lab exec -- CMD ...")
    argv = labmod.instance_argv(names, with_lab_config(command, names.state_dir / "agent.yaml"))
    os.execvpe(argv[0], argv, labmod.instance_env(names))


def with_lab_config(command: List[str], config: Path) -> List[str]:
    """``vpce-doctor check|daemon`` without ``--config`` gets the scenario's agent config (the lab's
    paths for the SSM agent's files, the scenario's settings), as ``up`` prints it."""
    if not config.exists():
        return command
    at = 1 if os.path.basename(command[0]) == "vpce-doctor" else (
        3 if command[1:3] == ["-m", "vpce_doctor"] else None)
    if at is None or len(command) <= at or command[at] not in ("check", "daemon"):
        return command
    if any(a == "--config" or a.startswith("--config=") for a in command[at:]):
        return command
    return command[:at + 1] + ["--config", str(config)] + command[at + 1:]


def cmd_set(args: argparse.Namespace) -> int:
    print(live.set_knobs(args.name, args.assignments).summary())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    name = args.name or labmod.default_name()
    labmod.preflight()
    print(f"lab '{name}' down" if labmod.down(name) else f"lab '{name}' was not up")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    paths = [scenario_path(s) for s in args.scenarios] or sorted(SCENARIO_DIR.glob("*.yaml"))
    scenarios = [load(p) for p in paths]  # every file validated before the first lab goes up
    failed = 0
    for sc in scenarios:
        started = time.monotonic()
        try:
            lab = labmod.up(sc, args.name, aws=args.aws)
            run = run_agent(lab, args.agent)
            problems = compare(sc.expect, run)
            print(summary_line(sc.name, run, problems), flush=True)
            if problems and args.verbose:
                print(run.stdout.rstrip() or "(no stdout)")
                if run.stderr.strip():
                    print("stderr: " + "\n        ".join(run.stderr.strip().splitlines()[-20:]))
        except LabError as exc:
            problems = [str(exc)]
            print(f"FAIL {sc.name}: {exc}", flush=True)
        finally:
            labmod.down(args.name)
        failed += bool(problems)
        if args.verbose:
            _say(f"{sc.name}: {time.monotonic() - started:.1f} s including up and down")
    if len(scenarios) > 1:
        print(f"{len(scenarios) - failed}/{len(scenarios)} scenarios pass")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    for name in DEMO_SCENARIOS:
        sc = load(SCENARIO_DIR / f"{name}.yaml")
        print(f"\n=== scenario {sc.name}: {sc.description.strip()}")
        try:
            lab = labmod.up(sc, args.name, aws=args.aws, log=_say)
            print(f"=== lab up in {lab.up_s:.1f} s; on the instance: vpce-doctor check\n", flush=True)
            run = run_agent(lab, args.agent, fmt=None, capture=False)
            print(f"\n=== exit code {run.exit_code} ({run.seconds:.1f} s)", flush=True)
        finally:
            labmod.down(args.name)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.lab", description=(
        "The vpce-doctor lab: a private VPC rebuilt with network namespaces (run as root)."))
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--name", help=f"lab name (default $VPCE_LAB_NAME or '{labmod.DEFAULT_NAME}')")
        sp.set_defaults(func=func)
        return sp

    def aws_flag(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--aws", choices=labmod.AWS_MODES, default="real",
                        help="real: the moto-based AWS layer (default); stub: TLS listeners only, no API")

    up = add("up", "build the lab for a scenario and leave it running", cmd_up)
    up.add_argument("scenario", help="scenario file, or the name of one in tests/lab/scenarios")
    aws_flag(up)
    ex = add("exec", "run a command on the lab's instance", cmd_exec)
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    st = add("set", "change a running lab without rebuilding it (router, security groups, resolver)", cmd_set)
    st.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help=f"settable: {live.knob_help()}")
    add("down", "tear the lab down (idempotent)", cmd_down)
    ve = add("verify", "per scenario: up, run the agent, compare with expect, down", cmd_verify)
    ve.add_argument("scenarios", nargs="*", help="scenario files or names (default: all shipped scenarios)")
    ve.add_argument("--agent", default=DEFAULT_AGENT, help="agent command (default: %(default)s)")
    ve.add_argument("-v", "--verbose", action="store_true", help="print the agent's JSON on failure")
    aws_flag(ve)
    de = add("demo", f"run the agent in the {' and '.join(DEMO_SCENARIOS)} labs", cmd_demo)
    de.add_argument("--agent", default=DEFAULT_AGENT, help="agent command (default: %(default)s)")
    aws_flag(de)
    return p


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally: down()` runs.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        if args.cmd != "down":
            labmod.preflight()
        return args.func(args)
    except (LabError, ScenarioError) as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("interrupted; what this command built was removed")
        return 130
