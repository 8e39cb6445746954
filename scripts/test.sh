#!/usr/bin/env bash
# The whole test suite: unit and integration tests (real dnsmasq, TLS listeners, moto, namespaces,
# systemd in a container, the wheel and the RPM), every shipped lab scenario end to end, then the
# same on CPython 3.9 with Amazon Linux 2023's library versions. Run as root: sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
before=$(ip netns list | awk '{print $1}' | sort)
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@" || status=$?
echo "== lab scenarios =="
.venv/bin/python -m tests.lab verify tests/lab/scenarios/*.yaml || status=$?
echo "== Python 3.9 with Amazon Linux 2023's library versions =="
scripts/test-py39.sh || status=$?
# Every test and lab run must clean up after itself, also when it fails.
after=$(ip netns list | awk '{print $1}' | sort)
leftover=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
if [ -n "${leftover// /}" ]; then echo "test: namespaces left behind: $leftover" >&2; status=1; fi
exit $status
