"""``clock``: the local clock against AWS's, from the ``Date`` header of the answers to the signed
calls (``checks.ssmapi``), and the kernel's time-sync state.

AWS-FACTS "When AWS refuses the instance": SSM, ec2messages and ssmmessages refuse SigV4 signatures
more than 5 minutes off (``InvalidSignatureException: Signature expired``); S3 only beyond 15
minutes (``RequestTimeTooSkewed``). So between 5 and 15 minutes S3 works and SSM does not.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any, Callable, Dict, List, Mapping

from .causes import explain
from .model import Check, Context, Finding, Outcome, Settings, Status, outcome
from .ssmapi import AUTH_SSM, PREFERENCES, S3_SKEW_S, SSM_SKEW_S, skew_words

CLOCK = "clock"
DRIFT_WARN_S = 60  # still accepted, but a bad day away from refused
DATE_RESOLUTION_S = 2  # Date has whole seconds, and the answer took some time to arrive


_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_STA_UNSYNC = 0x0040


class Timex(ctypes.Structure):
    """struct timex (adjtimex(2)); the tail is padding the kernel reserves."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("padding", ctypes.c_int * 11)]


_LIBC: List[Any] = []


def _libc() -> Any:
    """The C library of this process, loaded once (ctypes.util.find_library would run ldconfig)."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def time_sync_state() -> Dict[str, Any]:
    """The kernel's NTP state (adjtimex, read-only with modes 0): chrony, ntpd and timesyncd all
    clear STA_UNSYNC once they discipline the clock."""
    try:
        libc = _libc()
        tx = Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as exc:
        return {"readable": False, "error": str(exc)}
    if state < 0:
        return {"readable": False, "error": f"adjtimex errno {ctypes.get_errno()}"}
    synced = state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)
    return {"readable": True, "synchronized": synced, "max_error_ms": round(tx.maxerror / 1000, 1)}


def _samples(ctx: Context) -> List[Dict[str, Any]]:
    out = []
    for cid in (AUTH_SSM, PREFERENCES):
        data = ctx.data(cid)
        clock = data.get("clock") if isinstance(data, Mapping) else None
        if isinstance(clock, Mapping) and clock.get("parsed"):
            out.append({"from": cid, **clock})
    return out


def run_clock(ctx: Context, sync: Callable[[], Dict[str, Any]] = time_sync_state) -> Outcome:
    samples = _samples(ctx)
    state = sync()
    ev: Dict[str, Any] = {"samples": samples, "time_sync": state, "local_time":
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    # Said where the clock is off (the likely reason); an unsynchronised clock that agrees is a detail.
    unsynced = bool(state.get("readable")) and not state.get("synchronized")
    sync_words = "; the kernel reports that no time service disciplines the clock" if unsynced else ""
    if not samples:
        return outcome(Finding(CLOCK, Status.OK, "clock not compared: no AWS answer carried a Date header",
                               evidence=ev, verified=False), data={"measured": False})
    # Date has whole seconds: take the sample closest to zero (least delayed) as the skew.
    skew = min((s["skew_s"] for s in samples), key=abs)
    ev["skew_s"] = skew
    words = skew_words(skew)
    if abs(skew) <= DATE_RESOLUTION_S:
        return outcome(Finding(CLOCK, Status.OK, f"local clock agrees with AWS (within {DATE_RESOLUTION_S} s)",
                               evidence=ev), data={"measured": True, "skew_s": skew})
    if abs(skew) > SSM_SKEW_S:
        s3 = abs(skew) > S3_SKEW_S
        breaks = ("SSM (ssm, ec2messages, ssmmessages: Session Manager and Run Command) and S3" if s3 else
                  "SSM (ssm, ec2messages, ssmmessages: Session Manager and Run Command), not yet S3 (15 minutes)")
        short = "SSM and S3 refuse its signatures" if s3 else "SSM refuses its signatures (5 min limit), S3 still works"
        return outcome(Finding(CLOCK, Status.CRITICAL, f"local clock is {words}: {short}", evidence=ev,
                               **explain("clock_skew", skew=words + sync_words, limit="5 minutes", breaks=breaks)))
    if abs(skew) > DRIFT_WARN_S:
        return outcome(Finding(CLOCK, Status.WARNING, f"local clock is {words} (SSM refuses beyond 5 min)",
                               evidence=ev, **explain("clock_drift", skew=words + sync_words)),
                       data={"measured": True, "skew_s": skew})
    return outcome(Finding(CLOCK, Status.OK, f"local clock is {words} (accepted: SSM allows 5 min)",
                           evidence=ev), data={"measured": True, "skew_s": skew})


def checks(settings: Settings) -> List[Check]:
    return [Check(CLOCK, run_clock, wants=(AUTH_SSM, PREFERENCES), timeout_s=1.0)]
