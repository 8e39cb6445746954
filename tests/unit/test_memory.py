"""MemoryKeeper in a child interpreter (it freezes the GC and tunes malloc process-wide)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = r"""
import gc, json, sys
from vpce_doctor.memory import MemoryKeeper
keeper = MemoryKeeper()
keeper.start()
junk = [[i] for i in range(1000)]
before = gc.get_freeze_count()
keeper.after_cycle()
frozen = gc.get_freeze_count()
later = [[i] for i in range(1000)]
keeper.after_cycle()  # again: nothing new is frozen
print(json.dumps({"before": before, "frozen": frozen, "after": gc.get_freeze_count(),
                  "glibc": keeper._libc is not None and hasattr(keeper._libc, "malloc_trim")}))
"""


def _run(env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_after_the_first_cycle_long_lived_objects_are_frozen_once():
    got = _run({})
    assert got["before"] == 0 and got["frozen"] > 1000
    assert got["after"] == got["frozen"]  # frozen once: what later cycles keep stays collectable
    assert got["glibc"]


def test_an_operators_malloc_arena_max_is_left_alone():
    assert _run({"MALLOC_ARENA_MAX": "4"})["frozen"] > 1000
