"""The vpce-doctor lab: the reference private VPC rebuilt with network namespaces on one Linux box.

``python -m tests.lab up|exec|verify|down|demo`` (as root); scenarios are documented in
tests/lab/SCENARIOS.md, the addresses and formats shared with the AWS layer in docs/lab-contract.md.
"""
