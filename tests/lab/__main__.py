"""python -m tests.lab — see tests/lab/cli.py and tests/lab/SCENARIOS.md."""
from .cli import main

raise SystemExit(main())
