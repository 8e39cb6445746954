#!/usr/bin/env bash
# The lab demo: set up, build a simulated private VPC, run the agent on the healthy reference lab and
# on a broken one, show both reports, tear the lab down. Run as root: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m tests.lab demo "$@"
