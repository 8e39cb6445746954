#!/usr/bin/env bash
# The test run on Amazon Linux 2023's Python: CPython 3.9 with AL2023's own library versions
# (tests/packaging/al2023-constraints.txt), in .venv39. Run as root from anywhere:
#   sudo scripts/test-py39.sh [PYTEST ARGS...]
# 1. the unit tests (tests/unit) on 3.9 + the pins, including those that run moto in-process or
#    start the lab's AWS layer (moto 5.1.x, the last release for 3.9, accepts the pins);
# 2. every lab scenario with the agent from .venv39; the lab itself (namespaces, dnsmasq, the AWS
#    layer, IMDS) runs from the main .venv, as in scripts/test.sh: only the agent under test changes.
# Python 3.9: $PYTHON39, else pyenv's 3.9.x, else python3.9 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv39
PINS=tests/packaging/al2023-constraints.txt

find_py39() {
  local c
  for c in "${PYTHON39:-}" "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9.18/bin/python3.9 \
           "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9*/bin/python3.9 python3.9; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' 2>/dev/null; then command -v "$c"; return; fi
  done
  return 1
}

scripts/setup.sh  # system tools and the main .venv (the lab's own environment)
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' 2>/dev/null; then
  py39=$(find_py39) || { echo "test-py39: no CPython 3.9 found (set PYTHON39, or: pyenv install 3.9.18)" >&2; exit 3; }
  rm -rf "$VENV"
  "$py39" -m venv "$VENV"
fi
quiet() { grep -v '^WARNING: Location' || true; }
# The agent (editable, so the tests see the work tree) with its test tools, every AL2023 version pinned.
"$VENV/bin/python" -m pip install -q -c "$PINS" -e '.[test,prometheus]' 2>&1 | quiet
# Fail loudly if anything moved a pinned version (pip -c cannot be overridden, but a stale venv can).
"$VENV/bin/python" - "$PINS" <<'PY'
import sys
from importlib.metadata import version
pins = [l.split("==") for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")]
bad = [f"{n} {version(n)} != {v.strip()}" for n, v in pins if version(n) != v.strip()]
if bad:
    sys.exit("test-py39: not the AL2023 versions: " + "; ".join(bad))
print("test-py39: " + sys.version.split()[0] + ", " + ", ".join(f"{n} {v.strip()}" for n, v in pins))
PY

before=$(ip netns list | awk '{print $1}' | sort)
status=0
echo "== unit tests on $("$VENV/bin/python" --version) with the AL2023 pins =="
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit "$@" || status=$?
echo "== lab scenarios, agent on $("$VENV/bin/python" --version) (lab on $(.venv/bin/python --version)) =="
.venv/bin/python -m tests.lab verify --agent "$PWD/$VENV/bin/vpce-doctor" tests/lab/scenarios/*.yaml || status=$?
after=$(ip netns list | awk '{print $1}' | sort)
leftover=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
if [ -n "${leftover// /}" ]; then echo "test-py39: namespaces left behind: $leftover" >&2; status=1; fi
exit $status
