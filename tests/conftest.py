"""Every test starts and ends without kept AWS clients (``awsclient`` keeps them per process)."""
from typing import Iterator

import pytest

from vpce_doctor.checks import awsclient


@pytest.fixture(autouse=True)
def _no_kept_aws_clients() -> Iterator[None]:
    awsclient.forget_clients()
    yield
    awsclient.forget_clients()
