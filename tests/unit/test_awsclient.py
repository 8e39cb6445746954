"""Kept boto3 clients: reused across runs only when that cannot change what a run proves.

Real parts: a service-shaped HTTP listener on loopback that counts the TCP connections it accepts,
and the real s3.api check through botocore.
"""
from __future__ import annotations

import shutil
import ssl
import time
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

from vpce_doctor.checks import awsclient
from vpce_doctor.checks.model import Context, Facts, Settings, Status

from tests.unit.moto_fixture import FakeAws, aws_env, run_check, use_endpoints
from tests.unit.test_s3 import FACTS, call_data, checks

__all__ = ["aws_env"]

LIST_BUCKETS = (b'<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Owner><ID>vdt</ID></Owner>'
                b"<Buckets><Bucket><Name>vdt-lab-bucket</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate>"
                b"</Bucket></Buckets></ListAllMyBucketsResult>")


class CountingAws(FakeAws):
    """FakeAws that also counts accepted TCP connections."""

    def __init__(self) -> None:
        super().__init__(lambda method, path, headers, body: (200, {"Content-Type": "application/xml"}, LIST_BUCKETS))
        self.connections = 0
        server, fake = self.server, self
        original = server.process_request

        def counted(request, client_address):  # type: ignore[no-untyped-def]
            fake.connections += 1
            return original(request, client_address)

        server.process_request = counted  # type: ignore[method-assign]


def ctx(facts: Facts = FACTS, settings: Settings = Settings(), deadline_s: float = 30.0) -> Context:
    return Context(facts, settings, {}, deadline=time.monotonic() + deadline_s, check_timeout_s=deadline_s)


def test_client_with_credentials_is_kept_and_each_run_dials_afresh(aws_env, monkeypatch):
    fake = CountingAws()
    try:
        use_endpoints(monkeypatch, s3=fake.url)
        assert awsclient.client(ctx(), "s3") is awsclient.client(ctx(), "s3")
        for run in (1, 2, 3):
            f = run_check(checks()["s3.api"], FACTS, Settings(), call_data()).findings[0]
            assert f.status == Status.OK and f.evidence["bucket_count"] == 1, f.summary
            awsclient.drop_connections()  # what run_check in the runtime does after every run
            assert fake.connections == run  # no kept-alive connection hides a broken path
    finally:
        fake.close()


def test_without_drop_the_connection_is_reused(aws_env, monkeypatch):
    # The counter-check of the test above: the pool really would keep the connection.
    fake = CountingAws()
    try:
        use_endpoints(monkeypatch, s3=fake.url)
        for _ in range(2):
            assert run_check(checks()["s3.api"], FACTS, Settings(), call_data()).findings[0].status == Status.OK
        assert fake.connections == 1
    finally:
        fake.close()


def test_client_without_credentials_is_not_kept(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    use_endpoints(monkeypatch, s3="http://127.0.0.1:9")
    first = awsclient.client(ctx(), "s3")
    assert awsclient.client(ctx(), "s3") is not first
    # Credentials appear (an instance profile gets attached): the next client has them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAVDTTESTKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vdt-test-secret")
    later = awsclient.client(ctx(), "s3")
    assert later._request_signer._credentials is not None
    assert awsclient.client(ctx(), "s3") is later


def test_a_changed_profile_region_or_setting_builds_a_new_client(aws_env, monkeypatch):
    use_endpoints(monkeypatch, s3="http://127.0.0.1:9")
    base = awsclient.client(ctx(), "s3")
    other_profile = Facts(**{**FACTS.__dict__, "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/b"})
    assert awsclient.client(ctx(facts=other_profile), "s3") is not base
    other_region = Facts(**{**FACTS.__dict__, "region": "eu-west-1"})
    assert awsclient.client(ctx(facts=other_region), "s3").meta.region_name == "eu-west-1"
    assert awsclient.client(ctx(settings=Settings(api_timeout_s=1.5)), "s3") is not base
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAVDTTESTKEY000002")
    assert awsclient.client(ctx(), "s3") is not base
    awsclient.forget_clients()
    assert awsclient.client(ctx(), "s3") is not base


def test_a_budget_cut_client_is_used_once(aws_env, monkeypatch):
    use_endpoints(monkeypatch, s3="http://127.0.0.1:9")
    short = ctx(deadline_s=0.5)  # less left than the 3 s API timeout
    one = awsclient.client(short, "s3")
    assert one.meta.config.read_timeout <= 0.5
    assert awsclient.client(short, "s3") is not one
    assert awsclient.client(ctx(), "s3").meta.config.read_timeout == Settings().api_timeout_s


@pytest.fixture
def https_aws(tmp_path: Path) -> Iterator[Tuple[FakeAws, Path]]:
    """S3-shaped HTTPS on loopback, with a certificate for ``localhost`` from a fresh CA."""
    from tests.lab import certs

    ca, cert, key = certs.write(tmp_path, ["localhost"])
    server = FakeAws(lambda method, path, headers, body: (200, {"Content-Type": "application/xml"}, LIST_BUCKETS),
                     tls=(str(cert), str(key)))
    try:
        yield server, ca
    finally:
        server.close()


def test_the_ca_bundle_is_read_once_per_client_and_still_verifies(aws_env, monkeypatch, https_aws, tmp_path):
    server, ca = https_aws
    bundle = tmp_path / "bundle.pem"
    shutil.copy(ca, bundle)
    use_endpoints(monkeypatch, s3=server.url)
    s3 = awsclient.make_client("s3", "us-east-1", str(bundle), 2.0, 2.0)
    assert s3.list_buckets()["Buckets"][0]["Name"] == "vdt-lab-bucket"
    # Proof that new connections no longer re-read the file (botocore's way: ~17 ms of CPU each
    # for a system bundle): with the file gone, the next run's fresh connection still verifies.
    bundle.unlink()
    s3._endpoint.http_session.close()
    assert s3.list_buckets()["Buckets"][0]["Name"] == "vdt-lab-bucket"


def test_a_client_trusting_another_ca_is_refused(aws_env, monkeypatch, https_aws, tmp_path):
    # The counter-check: loading the bundle once does not switch verification off.
    from botocore.exceptions import SSLError
    from tests.lab import certs

    server, _ = https_aws
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _, _ = certs.write(other, ["localhost"])
    use_endpoints(monkeypatch, s3=server.url)
    s3 = awsclient.make_client("s3", "us-east-1", str(other_ca), 2.0, 2.0)
    for _ in range(2):  # also on the second, fresh connection
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            s3.list_buckets()
        s3._endpoint.http_session.close()


def test_a_pool_with_another_ssl_context_keeps_botocore_s_way(aws_env, monkeypatch, https_aws):
    # A proxy's pool has its own SSL context, into which nothing was loaded: it must keep the path.
    server, ca = https_aws
    use_endpoints(monkeypatch, s3=server.url)
    http = awsclient.make_client("s3", "us-east-1", str(ca), 2.0, 2.0)._endpoint.http_session

    class Pool:
        def __init__(self, context: Any) -> None:
            self.conn_kw = {"ssl_context": context}
            self.ca_certs = None
            self.cert_reqs = None

    own = Pool(http._manager.connection_pool_kw["ssl_context"])
    foreign = Pool(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    for pool in (own, foreign):
        http._setup_ssl_cert(pool, server.url, str(ca))
        assert pool.cert_reqs == "CERT_REQUIRED"
    assert own.ca_certs is None and foreign.ca_certs == str(ca)


# --- the environment never silently redirects a check (issue 11) -----------------------------------
def test_endpoint_urls_from_the_environment_are_ignored_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAVDTTESTKEY000009")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    made = awsclient.make_client("ec2", "us-east-1", None, 1, 1)
    assert made.meta.endpoint_url == "https://ec2.us-east-1.amazonaws.com"
    followed = awsclient.make_client("ec2", "us-east-1", None, 1, 1, configured_endpoint_urls=True)
    assert followed.meta.endpoint_url == "http://127.0.0.1:9"
    notes = awsclient.environment_notes(False)
    assert any(n.startswith("ignored AWS_ENDPOINT_URL=http://127.0.0.1:8, AWS_ENDPOINT_URL_EC2=http://127.0.0.1:9")
               for n in notes), notes
    assert any("follow" in n and "prove" in n for n in awsclient.environment_notes(True))


def test_a_proxy_is_named_in_the_notes_without_its_password() -> None:
    notes = awsclient.environment_notes(False, {"HTTPS_PROXY": "user:s3cr3t@proxy.corp:3128",
                                                "NO_PROXY": "169.254.169.254"})
    assert len(notes) == 1 and "s3cr3t" not in notes[0]
    assert "HTTPS_PROXY=***@proxy.corp:3128" in notes[0] and "NO_PROXY=169.254.169.254" in notes[0]
    assert awsclient.environment_notes(False, {}) == []


def test_checks_asking_at_once_share_one_build(aws_env, monkeypatch):
    """s3.api and s3.object start together: one client is built for both, not one each."""
    import threading

    fake = CountingAws()
    built = []
    real = awsclient.make_client

    def counting(*args, **kwargs):
        built.append(args[0])
        return real(*args, **kwargs)

    try:
        use_endpoints(monkeypatch, s3=fake.url)
        monkeypatch.setattr(awsclient, "make_client", counting)
        barrier = threading.Barrier(4, timeout=5)
        got = []

        def ask() -> None:
            barrier.wait()
            got.append(awsclient.client(ctx(), "s3"))

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert built == ["s3"] and len(got) == 4 and all(c is got[0] for c in got)
    finally:
        fake.close()


def test_clients_are_botocore_s_without_boto3(aws_env, monkeypatch):
    """boto3 (and s3transfer) cost ~0.1 s of CPU to import and add nothing the checks call."""
    import subprocess
    import sys

    code = ("import sys; from vpce_doctor.checks import awsclient; "
            "awsclient.make_client('s3', 'us-east-1', None, 1.0, 1.0); "
            "print('boto3' in sys.modules, 's3transfer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
