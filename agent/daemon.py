"""``vpce-doctor daemon``: run the checks every interval, publish every report, talk to systemd.

Who runs what:

* The **main thread** runs the loop (schedule → cycle → publish → status → wait) and only ever
  blocks in ``Wakeup.wait`` (``select`` on a socketpair), so a signal or a finished worker gets
  its attention at once. The socketpair is also the ``signal.set_wakeup_fd``, so a signal wakes
  it even when the kernel delivers it to another thread; the handlers just set a flag (``Event.set``
  in a handler can deadlock when the signal interrupts the main thread inside that Event's lock).
* Each cycle's ``run_check`` runs in a **daemon thread**: SIGTERM mid-cycle exits without waiting
  for it (a stuck socket must not delay a stop), and a cycle that never returns is noticed.
* Each **publisher** runs in its own daemon thread, waited for at most its timeout (+1 s): a
  hanging publisher costs at most that per cycle, and is skipped while its old call is stuck.
  Failures are logged and become notes of the *next* report ("publisher inventory failed: …").
* The **watchdog thread** sends ``WATCHDOG=1`` every ``WATCHDOG_USEC/2`` while the loop holds a
  valid *lease*: each phase promises to be back by a time it can guarantee (a cycle by its
  deadline, publishing by the longest publisher timeout, a wait by its end) plus a grace. A loop
  that overruns its promise is stalled: the pings stop and systemd restarts the service. Without a
  watchdog the daemon exits with status 3 itself, so ``Restart=on-failure`` still applies.

systemd protocol (sd_notify, see ``sdnotify.py``): ``STATUS=`` when the first cycle starts and
after every cycle, ``READY=1`` after the first cycle (its report is published by then),
``RELOADING=1`` … ``READY=1`` around a SIGHUP reload, ``STOPPING=1`` on SIGTERM/SIGINT.
A reload that fails validation is refused: the old config stays, the log says why in one line and
``STATUS=`` says so until a good config is loaded. A good reload starts a fresh cycle at once.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import __version__, logging_setup
from .checks.awsclient import forget_clients
from .checks.model import Status
from .config import Config, load_config
from .errors import ConfigError
from .memory import MemoryKeeper
from .publishers import Publisher, PublishResult, PublishSettings, build_publishers
from .report import Report
from .runtime import run_check
from .transitions import carry
from .daemon_threads import Job, Stalled, Wakeup
from .sdnotify import Notifier, one_line

log = logging.getLogger(__name__)

EXIT_UNKNOWN = int(Status.UNKNOWN)
DEFAULT_STALL_GRACE_S = 30.0  # slack on every lease: thread scheduling, a slow disk, a busy host
PUBLISH_GRACE_S = 1.0  # publishers bound themselves; this only absorbs their bookkeeping
DEFAULT_PUBLISH_TIMEOUT_S = 5.0  # for a publisher that names no timeout of its own
RELOAD_BUDGET_S = 10.0  # reading and validating a config file (1 MiB at most) on reload
CLOSE_BUDGET_S = 2.0  # closing all publishers, in parallel: SIGTERM must end the process within 5 s
MAX_CAUSE_CHARS = 100  # of the first root cause in STATUS=, so the verdicts stay visible

CheckFn = Callable[[Config], Report]
PublishersFactory = Callable[[PublishSettings, str, Optional[str]], List[Publisher]]
ConfigLoader = Callable[[Optional[str]], Config]


def _run_check(config: Config) -> Report:
    return run_check(config)


# --- one-line texts -----------------------------------------------------------------------------------
def summary(report: Report) -> str:
    """"OK: 14 checks OK; Session Manager works, …" or "CRITICAL: 3 of 14 checks not OK (dns.ssm: …); …"."""
    n = len(report.findings)
    bad = [f for f in report.findings if f.status != Status.OK]
    if not bad:
        head = f"OK: {n} checks OK"
    else:
        roots = [f for f in bad if f.blocked_by is None] or bad
        cause = one_line(roots[0].cause or roots[0].summary, MAX_CAUSE_CHARS)
        more = f" +{len(roots) - 1} more" if len(roots) > 1 else ""
        head = f"{report.status.name}: {len(bad)} of {n} checks not OK ({roots[0].id}: {cause}{more})"
    verdicts = ", ".join(f"{v.title} {v.status}" for v in report.verdicts)
    return f"{head}; {verdicts}" if verdicts else head


def _counts(report: Report) -> Dict[str, int]:
    counts = {s.name: 0 for s in Status}
    for f in report.findings:
        counts[f.status.name] += 1
    return counts


def _publisher_timeout(publisher: Publisher, settings: PublishSettings) -> float:
    own = getattr(publisher, "timeout_s", None)
    if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0:
        return float(own)
    return {"inventory": settings.inventory_timeout_s, "inventory_file": settings.inventory_file_timeout_s,
            "cloudwatch": settings.cloudwatch_timeout_s}.get(publisher.name, DEFAULT_PUBLISH_TIMEOUT_S)


class Daemon:
    """The loop. Production passes only ``config``/``config_path`` and the systemd parts; tests may
    inject ``check`` (e.g. one that hangs), ``publishers_factory`` and a short ``stall_grace_s``."""

    def __init__(self, config: Config, config_path: Optional[str], *, notifier: Optional[Notifier] = None,
                 watchdog_interval_s: Optional[float] = None, check: CheckFn = _run_check,
                 publishers_factory: PublishersFactory = build_publishers, loader: ConfigLoader = load_config,
                 log_format_override: Optional[str] = None, stall_grace_s: float = DEFAULT_STALL_GRACE_S,
                 rng: Optional[random.Random] = None, memory: Optional[MemoryKeeper] = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.watchdog_interval_s = watchdog_interval_s
        self.last_report: Optional[Report] = None  # the last report a cycle produced (kept across failures)
        self.cycles = 0
        self.abandoned_work = False  # True after run() when a worker thread was left running
        self._check = check
        self._publishers_factory = publishers_factory
        self._loader = loader
        self._log_format_override = log_format_override
        self._stall_grace_s = stall_grace_s
        self._rng = rng or random.Random()
        self._memory = memory
        self._wakeup = Wakeup()
        self._stop_requested = False
        self._stop_reason = "stop requested"
        self._reload_requested = False
        self._lease_until = time.monotonic() + stall_grace_s
        self._publishers: List[Publisher] = []
        self._publishers_key: Optional[Tuple[Any, ...]] = None
        self._in_flight: Dict[str, Job] = {}  # publisher name -> its call still running from an earlier cycle
        self._cycle_job: Optional[Job] = None
        self._pending_notes: List[str] = []  # for the next report
        self._reload_error: Optional[str] = None
        self._previous: Optional[Dict[str, Status]] = None
        self._previous_overall: Optional[Status] = None
        self._watchdog_stop = threading.Event()
        self._saved_wakeup_fd = -1

    # --- control (safe from signal handlers and other threads) ----------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        self._stop_reason = reason
        self._stop_requested = True
        self._wakeup.notify()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wakeup.notify()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
        else:
            self.request_stop(signal.Signals(signum).name)

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self, once: bool = False) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or, with ``once``, for one cycle (exit = its status)."""
        previous_handlers = self._install_signals()
        watchdog: Optional[threading.Thread] = None
        code = EXIT_UNKNOWN
        try:
            if self._memory is not None:
                self._memory.start()
            self._ensure_state_dir()
            self._open_publishers()
            self._log_start(once)
            if self.watchdog_interval_s:
                watchdog = threading.Thread(target=self._watchdog_loop, args=(self.watchdog_interval_s,),
                                            name="watchdog", daemon=True)
                watchdog.start()
            code = self._loop(once)
        except Stalled:
            code = EXIT_UNKNOWN
        finally:
            last = summary(self.last_report) if self.last_report is not None else "no report yet"
            self.notifier.stopping(f"stopping ({self._stop_reason}); last: {last}")
            self._watchdog_stop.set()
            if watchdog is not None:
                watchdog.join(0.5)  # it wakes at once; bounded anyway (SIGTERM: out within 5 s)
            self._close_publishers(self._publishers)
            self._publishers = []
            for sig, handler in previous_handlers:
                signal.signal(sig, handler)
            if previous_handlers:
                signal.set_wakeup_fd(self._saved_wakeup_fd)
            self.abandoned_work = self._abandoned()
            if self.abandoned_work:
                log.info("not waiting for check or publisher threads still running")
            self.notifier.close()
            log.info("stopped (%s), exit %d", self._stop_reason, code, extra={"event": "stopped", "exit_code": code})
        return code

    def _loop(self, once: bool) -> int:
        first = True
        while not self._stop_requested:
            started = time.monotonic()
            report, published = self._cycle()
            if self._stop_requested:
                break
            if once:
                self._stop_reason = "one cycle done (--once)"
                if report is not None:
                    self._log_cycle(report, published, None)
                self.notifier.send("READY=1", "STATUS=" + one_line(self._status_text(report, published, None)))
                return report.exit_code if report is not None else EXIT_UNKNOWN
            interval = self.config.daemon.interval_s + self._rng.uniform(0, self.config.daemon.jitter_s)
            next_start = started + interval  # the interval is between cycle starts
            wait_s = max(0.0, next_start - time.monotonic())
            if report is not None:
                self._log_cycle(report, published, wait_s)
            status = "STATUS=" + one_line(self._status_text(report, published, wait_s))
            if first:  # the first report is published: now we are "started"
                self.notifier.send("READY=1", status)
                first = False
            else:
                self.notifier.send(status)
            if self._memory is not None:
                self._memory.after_cycle()
            if self._reload_requested and self._reload():
                continue  # a good reload: check with the new config at once
            self._wait_until(next_start)
        return EXIT_UNKNOWN if once else 0

    def _wait_until(self, when: float) -> None:
        while not self._stop_requested:
            self._lease(when - time.monotonic())
            state = self._await(lambda: self._reload_requested, when)
            if state != "done":
                return  # time for the next cycle, or stop
            if self._reload():
                return

    def _cycle(self) -> Tuple[Optional[Report], List[PublishResult]]:
        self.cycles += 1
        n, config = self.cycles, self.config
        if n == 1:
            self.notifier.status("running the first checks")
        self._lease(config.deadline_s)
        job = Job(f"cycle-{n}", partial(self._check, config), self._wakeup)
        self._cycle_job = job
        state = self._await(lambda: job.done, self._lease_until)
        if state == "timeout":
            late = time.monotonic() - job.started
            if not self.watchdog_interval_s:
                log.error("cycle %d stalled: no result %.0f s after it started (deadline %g s); exiting "
                          "so that the supervisor restarts the daemon", n, late, config.deadline_s)
                self._stop_reason = f"cycle {n} stalled"
                raise Stalled()
            log.error("cycle %d stalled: no result %.0f s after it started (deadline %g s); watchdog pings "
                      "stop, so systemd restarts the service", n, late, config.deadline_s,
                      extra={"event": "stalled", "cycle": n})
            state = self._await(lambda: job.done, None)  # the lease stays expired: no pings
            if state == "done":
                log.warning("cycle %d finished after all, %.0f s late; the loop is healthy again", n,
                            time.monotonic() - job.started)
        if state == "stop":
            return None, []
        self._cycle_job = None
        if job.error is not None:
            exc = job.error
            log.error("cycle %d failed; the last good report stays in force", n,
                      exc_info=(type(exc), exc, exc.__traceback__), extra={"event": "cycle_failed", "cycle": n})
            return None, []
        report: Report = carry(self.last_report, job.result)  # when each finding's status began
        if self._pending_notes:
            report = replace(report, notes=tuple(report.notes) + tuple(self._pending_notes))
            self._pending_notes = []
        self.last_report = report
        self._log_transitions(report)
        published = self._publish(report)
        for result in published:
            if not result.ok:
                self._pending_notes.append(f"publisher {result.publisher} failed: {result.detail}")
                log.warning("publisher %s failed: %s", result.publisher, result.detail,
                            extra={"event": "publish_failed", "publisher": result.publisher})
            else:
                log.debug("publisher %s: %s (%.3f s)", result.publisher, result.detail, result.duration_s)
        return report, published

    def _await(self, predicate: Callable[[], bool], until: Optional[float]) -> str:
        """"done" when ``predicate()`` holds, "stop" on a stop request, "timeout" at ``until``."""
        while True:
            if self._stop_requested:
                return "stop"
            if predicate():
                return "done"
            remaining = None if until is None else until - time.monotonic()
            if remaining is not None and remaining <= 0:
                return "timeout"
            self._wakeup.wait(remaining)

    def _lease(self, seconds: float) -> None:
        self._lease_until = time.monotonic() + max(0.0, seconds) + self._stall_grace_s

    # --- publishing ---------------------------------------------------------------------------------------
    def _publish(self, report: Report) -> List[PublishResult]:
        settings = self.config.publish
        results: Dict[str, PublishResult] = {}
        jobs: Dict[str, Tuple[Job, float]] = {}
        for p in self._publishers:
            stuck = self._in_flight.get(p.name)
            if stuck is not None and not stuck.done:
                results[p.name] = PublishResult(p.name, False, f"skipped: its previous call has not returned after "
                                                f"{time.monotonic() - stuck.started:.0f} s", 0.0)
                continue
            self._in_flight.pop(p.name, None)
            timeout = _publisher_timeout(p, settings)
            jobs[p.name] = (Job(f"publish-{p.name}", partial(p.publish, report), self._wakeup), timeout)
        if jobs:
            budget = max(t for _, t in jobs.values()) + PUBLISH_GRACE_S
            self._lease(budget)
            self._await(lambda: all(j.done for j, _ in jobs.values()), time.monotonic() + budget)
        for name, (job, timeout) in jobs.items():
            if not job.done:
                self._in_flight[name] = job
                results[name] = PublishResult(name, False, f"no result within {timeout + PUBLISH_GRACE_S:g} s",
                                              time.monotonic() - job.started)
            elif job.error is not None:
                results[name] = PublishResult(name, False, one_line(
                    f"raised {job.error.__class__.__name__}: {job.error}", 300), time.monotonic() - job.started)
            elif not isinstance(job.result, PublishResult):
                results[name] = PublishResult(name, False, f"returned {type(job.result).__name__}, not a PublishResult",
                                              time.monotonic() - job.started)
            else:
                results[name] = job.result
        return [results[p.name] for p in self._publishers if p.name in results]

    def _open_publishers(self) -> None:
        c = self.config
        key = (c.publish, c.daemon.state_dir, c.settings.ca_bundle)
        if key == self._publishers_key:
            return
        self._close_publishers(self._publishers)
        self._in_flight.clear()  # stuck calls belong to the old objects
        try:
            self._publishers = list(self._publishers_factory(c.publish, c.daemon.state_dir, c.settings.ca_bundle))
            self._publishers_key = key
        except Exception as exc:  # noqa: BLE001 - the daemon runs on without publishers, and says so
            log.error("publishers could not start: %s: %s", exc.__class__.__name__, exc)
            self._pending_notes.append(one_line(f"publishers could not start: {exc.__class__.__name__}: {exc}", 300))
            self._publishers, self._publishers_key = [], None

    def _close_publishers(self, publishers: Sequence[Publisher]) -> None:
        if not publishers:
            return
        self._lease(CLOSE_BUDGET_S)
        jobs = [(p.name, Job(f"close-{p.name}", p.close, self._wakeup)) for p in publishers]
        deadline = time.monotonic() + CLOSE_BUDGET_S
        while time.monotonic() < deadline and not all(j.done for _, j in jobs):
            self._wakeup.wait(deadline - time.monotonic())  # even on a stop request: closing is bounded
        for name, job in jobs:
            if not job.done:
                log.warning("publisher %s did not close within %g s", name, CLOSE_BUDGET_S)
            elif job.error is not None:
                log.warning("publisher %s failed to close: %s: %s", name, job.error.__class__.__name__, job.error)

    # --- reload ---------------------------------------------------------------------------------------
    def _reload(self) -> bool:
        """Load the config file again; True when the new one is in force."""
        self._reload_requested = False
        self.notifier.reloading()
        old = self.config
        # Parsing runs off the main loop, bounded: a hostile file must not delay SIGTERM (<= 5 s)
        # nor the next cycle. An abandoned parse ends with its daemon thread.
        job = Job("reload", partial(self._loader, self.config_path), self._wakeup)
        state = self._await(lambda: job.done, time.monotonic() + RELOAD_BUDGET_S)
        if state == "stop":
            return False
        try:
            if state == "timeout":
                raise ConfigError(f"{self.config_path}: (file): not parsed within {RELOAD_BUDGET_S:g} s; "
                                  "expected a plain settings file")
            if job.error is not None:
                raise job.error if isinstance(job.error, Exception) else ConfigError(repr(job.error))
            new = job.result
        except Exception as exc:  # noqa: BLE001 - ConfigError above all; nothing may end the daemon
            self._reload_error = one_line(str(exc), 300)
            log.error("reload refused: %s; the config loaded from %s stays in force", self._reload_error, old.source,
                      extra={"event": "reload_refused"})
            last = summary(self.last_report) if self.last_report is not None else "no report yet"
            self.notifier.send("READY=1", "STATUS=" + one_line(
                f"reload refused: {self._reload_error}; still running with the previous config; last: {last}"))
            return False
        self.config = new
        self._reload_error = None
        forget_clients()  # a reload is a fresh start: AWS config files may have changed too
        if self._log_format_override is None and new.daemon.log_format != old.daemon.log_format:
            logging_setup.configure(new.daemon.log_format)
        if new.daemon.state_dir != old.daemon.state_dir:
            self._ensure_state_dir()
        self._open_publishers()
        log.info("config reloaded from %s", new.source, extra={"event": "reloaded"})
        self.notifier.send("READY=1", "STATUS=" + one_line(f"config reloaded from {new.source}; running the checks"))
        return True

    # --- watchdog -----------------------------------------------------------------------------------------
    def _watchdog_loop(self, interval: float) -> None:
        stalled = False
        while True:
            if time.monotonic() <= self._lease_until:
                self.notifier.watchdog()
                if stalled:
                    log.warning("the loop makes progress again: watchdog pings resume")
                    stalled = False
            elif not stalled:
                stalled = True
                log.error("the loop is stalled: watchdog pings stop (systemd restarts the service after WatchdogSec)",
                          extra={"event": "watchdog_stopped"})
            if self._watchdog_stop.wait(interval):
                return

    # --- logs and status ------------------------------------------------------------------------------------
    def _status_text(self, report: Optional[Report], published: Sequence[PublishResult],
                     wait_s: Optional[float]) -> str:
        if report is not None:
            parts = [summary(report)]
        else:
            last = summary(self.last_report) if self.last_report is not None else "no report yet"
            parts = [f"cycle {self.cycles} failed (see the log); last: {last}"]
        failed = [r.publisher for r in published if not r.ok]
        if failed:
            parts.append(f"publish failed: {', '.join(failed)}")
        if self._reload_error:
            parts.append(f"reload refused: {self._reload_error}")
        if wait_s is not None:
            parts.append(f"next run in {wait_s:.0f} s")
        return "; ".join(parts)

    def _log_cycle(self, report: Report, published: Sequence[PublishResult], wait_s: Optional[float]) -> None:
        counts = _counts(report)
        pub = ", ".join(f"{r.publisher} {'ok' if r.ok else 'FAILED'}" for r in published) or "none"
        nxt = f"next run in {wait_s:.0f} s" if wait_s is not None else "no next run"
        log.info("cycle %d: %s in %.2f s (%s); %s; published: %s; %s", self.cycles,
                 report.status.name, report.duration_s, ", ".join(f"{v} {k}" for k, v in counts.items()),
                 ", ".join(f"{v.title} {v.status}" for v in report.verdicts), pub, nxt,
                 extra={"event": "cycle", "cycle": self.cycles, "status": report.status.name,
                        "exit_code": report.exit_code, "duration_s": round(report.duration_s, 3), "counts": counts,
                        "verdicts": {v.name: v.status for v in report.verdicts},
                        "published": {r.publisher: r.ok for r in published},
                        "next_run_s": round(wait_s, 1) if wait_s is not None else None})

    def _log_transitions(self, report: Report) -> None:
        current = {f.id: f for f in report.findings}
        previous = self._previous
        if previous is None:  # the first cycle: name what is wrong from the start
            for f in report.findings:
                if f.status != Status.OK and f.blocked_by is None:
                    log.warning("%s is %s: %s", f.id, f.status.name, f.cause or f.summary,
                                extra={"event": "initial", "check": f.id, "to": f.status.name})
        else:
            for fid, f in current.items():
                before = previous.get(fid)
                if before is None or before == f.status:
                    continue
                level = logging.WARNING if f.status > before else logging.INFO
                log.log(level, "transition %s: %s -> %s: %s", fid, before.name, f.status.name,
                        f.cause if f.status != Status.OK and f.cause else f.summary,
                        extra={"event": "transition", "check": fid, "from": before.name, "to": f.status.name})
            for fid in previous.keys() - current.keys():
                log.info("%s is no longer checked", fid, extra={"event": "transition", "check": fid})
        before_overall = self._previous_overall
        if before_overall is not None and before_overall != report.status:
            level = logging.WARNING if report.status > before_overall else logging.INFO
            log.log(level, "overall transition: %s -> %s: %s", before_overall.name, report.status.name,
                    summary(report), extra={"event": "transition", "check": "overall", "from": before_overall.name,
                                            "to": report.status.name})
        self._previous = {fid: f.status for fid, f in current.items()}
        self._previous_overall = report.status

    def _log_start(self, once: bool) -> None:
        c = self.config
        mode = "one cycle (--once)" if once else (f"every {c.daemon.interval_s:g} s + up to {c.daemon.jitter_s:g} s "
                                                  "jitter")
        log.info("vpce-doctor %s daemon started: config %s; %s; publishers: %s; systemd notify: %s; watchdog: %s",
                 __version__, c.source, mode,
                 ", ".join(p.name for p in self._publishers) or "none",
                 self.notifier.address or "off",
                 f"every {self.watchdog_interval_s:g} s" if self.watchdog_interval_s else "off",
                 extra={"event": "started"})

    # --- plumbing ----------------------------------------------------------------------------------------------
    def _install_signals(self) -> List[Tuple[int, Any]]:
        if threading.current_thread() is not threading.main_thread():
            return []  # in-process use (tests): request_stop()/request_reload() instead
        saved: List[Tuple[int, Any]] = []
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            saved.append((sig, signal.signal(sig, self._on_signal)))
        # The kernel may deliver a signal to any thread; only a write to a wakeup fd is sure to end
        # the main thread's select() (the Python-level handler then runs in the main thread).
        self._saved_wakeup_fd = signal.set_wakeup_fd(self._wakeup.write_fd(), warn_on_full_buffer=False)
        return saved

    def _ensure_state_dir(self) -> None:
        path = self.config.daemon.state_dir
        try:
            os.makedirs(path, mode=0o750, exist_ok=True)
        except OSError as exc:  # the publishers that write there will say so too
            log.warning("cannot create the state directory %s: %s", path, exc.strerror or exc)

    def _abandoned(self) -> bool:
        jobs = list(self._in_flight.values()) + ([self._cycle_job] if self._cycle_job is not None else [])
        if any(j.alive for j in jobs):
            return True
        # ThreadPoolExecutor workers inside a check are non-daemon threads: interpreter exit would join them.
        main = threading.main_thread()
        return any(t.is_alive() and not t.daemon and t is not main and t is not threading.current_thread()
                   for t in threading.enumerate())
