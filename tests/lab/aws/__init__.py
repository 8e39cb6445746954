"""The lab's AWS layer: moto seeded from world.json, behind a TLS front that speaks for AWS's
service names on the lab's addresses and adds what moto lacks (SSM inventory, S3 redirects and
access denials). Run it with ``python -m tests.lab.aws``; see cli.py and docs/lab-contract.md."""
