#!/usr/bin/env bash
# The whole test suite: unit and integration tests (real dnsmasq, TLS listeners, moto, namespaces),
# then every shipped lab scenario end to end. Run as root from anywhere: sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@" || status=$?
echo "== lab scenarios =="
.venv/bin/python -m tests.lab verify tests/lab/scenarios/*.yaml || status=$?
leftover=$(ip netns list | grep -E '^(vdl|vdt)-' || true)
if [ -n "$leftover" ]; then echo "test: namespaces left behind: $leftover" >&2; status=1; fi
exit $status
