"""The command line: ``vpce-doctor check`` (one shot), ``vpce-doctor daemon`` (the service) and
``vpce-doctor config check``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from dataclasses import replace
from typing import NoReturn, Optional, Sequence

from . import __version__, fleet, logging_setup
from .checks.model import Status
from .checks.redact import redact
from .config import DEFAULT_CONFIG_PATH, Config, load_config, load_config_ahead
from .errors import VpceDoctorError

# What only a run needs (the runtime, IMDS, rendering, and through them botocore) is imported inside
# the commands: `check` starts the isolation probe first, so that its wait overlaps these imports.

log = logging.getLogger("vpce_doctor")

EXIT_UNKNOWN = int(Status.UNKNOWN)

DESCRIPTION = """\
Prove, from inside a private EC2 instance, that its private paths to AWS work:
the VPC resolver answers; ssm, ec2messages and ssmmessages resolve to the private IPs of their
interface-endpoint ENIs; TCP 443 and TLS to every ENI work; S3 works through the gateway endpoint;
and the instance has no path to the internet. Every failure comes with its cause and the fix."""

CHECK_HELP = """\
Run every check once and print the report. Exit code = worst status:
0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also: bad config, our own error).
Finding ids: imds, instance.public_ip, instance.profile, ssm_agent[.<aspect>], resolver,
resolver.system, ec2.api, dns.<svc>, eni.<svc>, reach.<svc>[.<ip>], s3.dns, s3.route, s3.api,
s3.object, egress.<host>, iam.credentials, auth.ssm, ssm.preferences, clock, session.<need>."""


DAEMON_HELP = """\
Run the checks at start and then every daemon.interval_s (+ up to daemon.jitter_s), and publish
each report through publish.publishers: last_report (JSON in daemon.state_dir), inventory (SSM
PutInventory), inventory_file (the SSM agent's custom inventory folder), cloudwatch (PutMetricData),
http (/healthz, /report, /metrics on 127.0.0.1:9464; off by default). A failing publisher is logged
and named in the next report's notes; it never stops the daemon.

For systemd (Type=notify): READY=1 after the first cycle, STATUS= a one-line summary per cycle,
WATCHDOG=1 every WATCHDOG_USEC/2 while the loop makes progress, STOPPING=1 on exit.
Signals: SIGTERM/SIGINT stop within 5 s (exit 0), even mid-cycle. SIGHUP reloads the config file;
an invalid file is refused (logged, shown in STATUS=) and the running config stays in force.
Logs go to stderr, one line per event: a summary per cycle and every status transition."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which a monitor would read as CRITICAL: ours is 3."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNKNOWN, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vpce-doctor", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"vpce-doctor {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser("check", help="run all checks once and print the report (exit code = status)",
                           description=CHECK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--config", metavar="FILE",
                       help=f"YAML config (default {DEFAULT_CONFIG_PATH}, used when it exists)")
    check.add_argument("--format", choices=("table", "json", "nagios"), default="table",
                       help="table for people (default), json for machines, nagios for monitoring")
    check.add_argument("--only", metavar="IDS", type=fleet.id_list,  # ",,," is a usage error, not "all"
                       help="comma-separated finding ids or prefixes to run (e.g. dns,reach.ssm); "
                            "what they depend on runs too")
    check.add_argument("--timeout", type=float, metavar="S",
                       help="global deadline in seconds (default 10, or timeouts.deadline_s)")
    check.add_argument("-v", "--verbose", action="count", default=0,
                       help="the table shows every check with its evidence (without -v: what is wrong or "
                            "not proven, then one line per healthy area); -vv also logs debug details to stderr")
    check.add_argument("--strict", action="store_true",
                       help="count UNVERIFIED findings (OK but not proven, e.g. no EC2 API to confirm an ENI) "
                            "as WARNING, in the exit code too")
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                       help="colour the table (auto: only on a terminal)")

    daemon = sub.add_parser("daemon", help="run the checks every interval and publish each report (systemd service)",
                            description=DAEMON_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    daemon.add_argument("--config", metavar="FILE",
                        help=f"YAML config (default {DEFAULT_CONFIG_PATH}, used when it exists); "
                             "SIGHUP reads it again")
    daemon.add_argument("--once", action="store_true",
                        help="run one cycle, publish it, exit with its status (for timers and tests)")
    daemon.add_argument("--log-format", choices=("text", "json"),
                        help="log lines on stderr: text, or one JSON object per line "
                             "(default: daemon.log_format, text)")

    cfg = sub.add_parser("config", help="validate a config file",
                         description="Validate a config file: prints OK, or one line naming the key "
                                     "and what was expected (exit 3).")
    cfg.set_defaults(print_config_help=cfg.print_help)  # `vpce-doctor config` alone: this help, not the top's
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    cfg_check = cfg_sub.add_parser("check", help="validate FILE and exit 0 (valid) or 3 (invalid)")
    cfg_check.add_argument("file", metavar="FILE")
    fleet.add_parser(sub)
    return p


def _check(args: argparse.Namespace) -> int:
    if args.timeout is not None and not 0 < args.timeout <= 600:
        raise VpceDoctorError(f"--timeout: {args.timeout:g} is out of range; expected 0 < S <= 600")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    ahead = load_config_ahead(args.config)
    if ahead is not None:
        _start_isolation_probe(ahead, only)
    config = load_config(args.config)
    if args.timeout is not None:
        config = replace(config, deadline_s=args.timeout)
    from .render import render_json, render_nagios, render_table
    from .runtime import run_check

    report = run_check(config, only, strict=args.strict)
    if args.format == "json":
        _emit(render_json(report))
    elif args.format == "nagios":
        _emit(render_nagios(report))
    else:
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                             and os.environ.get("NO_COLOR") is None)
        _emit(render_table(report, colour=colour, verbose=args.verbose > 0))
    if getattr(args, "own_process", False):
        _end_process(report.exit_code)
    return report.exit_code


def _end_process(code: int) -> "NoReturn":
    """Leave as soon as the report is out: tearing the interpreter down object by object (botocore's
    models, dnspython) costs ~0.15 s of CPU and wall time, and the kernel frees it all anyway. Only
    for the process's own command line (``main()`` without argv), never when called as a function."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code)


def _start_isolation_probe(config: Config, only: Optional[Sequence[str]]) -> None:
    """Start the egress probes now, before botocore, the other check modules and IMDS: they need no
    instance facts, and their wait (egress.timeout_s) is the longest of the run. The runner still
    runs each ``egress.<host>`` check in its place (after the resolver check) and collects what was
    found; a run whose full config differs dials again. Only for the targets this run will check
    (``--only``, ``checks.overrides``)."""
    from .checks import isolation_probe  # the standard library only: not dnspython, not botocore
    from .runner import would_run

    targets = [t for t in config.settings.egress_targets
               if would_run(f"egress.{t.host}", only, config.settings.overrides)]
    if targets:
        isolation_probe.prestart(config.settings, targets)


def _emit(text: str) -> None:
    """Print to stdout; a reader that went away (``| head -1``) is not our error."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _error_document(fmt: str, message: str) -> Optional[str]:
    """What ``check --format nagios|json`` prints on stdout when it cannot run: monitors read
    stdout, so an error there is a status line (Nagios) or a document (JSON), not silence."""
    if fmt == "nagios":
        return f"VPCE-DOCTOR UNKNOWN - {' '.join(message.split())}"
    if fmt == "json":
        from .report import SCHEMA_VERSION

        return json.dumps({"schema_version": SCHEMA_VERSION, "agent_version": __version__, "status": "UNKNOWN",
                           "exit_code": EXIT_UNKNOWN, "error": message, "verdicts": {}, "facts": {},
                           "findings": [], "notes": []}, indent=2)
    return None


def _daemon(args: argparse.Namespace) -> int:
    from .daemon import Daemon
    from .imds import remember_static_facts
    from .memory import MemoryKeeper
    from .sdnotify import Notifier, watchdog_interval

    config = load_config(args.config)
    logging_setup.configure(args.log_format or config.daemon.log_format)
    remember_static_facts()  # every cycle still proves IMDS answers (token PUT + the changeable facts)
    daemon = Daemon(config, args.config, notifier=Notifier.from_env(), watchdog_interval_s=watchdog_interval(),
                    log_format_override=args.log_format, memory=MemoryKeeper())
    code = daemon.run(once=args.once)
    if daemon.abandoned_work:
        # A check or publisher thread is still stuck (in a socket, say): interpreter exit would wait
        # for non-daemon executor threads, and a stop must not wait. Flush, then leave at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    s = config.settings
    print(f"{args.file}: OK ({len(s.services)} interface services: {', '.join(s.services)}; "
          f"{len(s.egress_targets)} isolation targets; deadline {config.deadline_s:g} s)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.own_process = argv is None  # the console script's call: `check` may end the process itself
    verbose = getattr(args, "verbose", 0)
    logging_setup.configure_cli(verbose)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "daemon":
            return _daemon(args)
        if args.command == "fleet":
            return fleet.run(args)
        if args.command == "config":
            if getattr(args, "config_command", None) == "check":
                return _config_check(args)
            args.print_config_help()
            return EXIT_UNKNOWN
        parser.print_help()
        return EXIT_UNKNOWN if args.command else 0
    except VpceDoctorError as exc:
        message = redact(str(exc))
        print(f"vpce-doctor: error: {message}", file=sys.stderr)
        if args.command == "check":
            document = _error_document(args.format, message)
            if document is not None:
                _emit(document)
        return EXIT_UNKNOWN
    except BrokenPipeError:
        _emit("")  # stdout's reader left: silence the flush at exit
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        print("vpce-doctor: interrupted", file=sys.stderr)
        return EXIT_UNKNOWN
    except Exception as exc:  # noqa: BLE001 - our own crash: one line, exit 3, traceback only with -vv
        message = redact(f"internal error: {exc.__class__.__name__}: {exc} (rerun with -vv for the traceback)")
        print(f"vpce-doctor: {message}", file=sys.stderr)
        if args.command == "check":
            document = _error_document(args.format, message)
            if document is not None:
                _emit(document)
        if verbose > 1:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return EXIT_UNKNOWN
