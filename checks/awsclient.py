"""One way to make boto3 clients, for the checks (``client(ctx, …)``) and the publishers
(``make_client(…)``, no check context): the instance's region, our CA bundle, bounded
timeouts and no retries (so a timeout we report is the timeout we set), and a bounded IMDS
credential fetch. No client is created at import time.

Test/debug hook: an endpoint URL per service, from ``ENDPOINT_URLS`` (set by tests) or the
environment variable ``VPCE_DOCTOR_ENDPOINT_URL_<SERVICE>`` (e.g. ``…_EC2=http://127.0.0.1:5000``).
Production leaves both unset, so botocore resolves the real service hostname — the name whose
Private DNS / gateway path is what we are proving.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import ipv6
from .model import Context
from .net import ca_bundle_from, proxy_environment
from .redact import redact

ENV_PREFIX = "VPCE_DOCTOR_ENDPOINT_URL_"

# service ("ec2", "s3") -> endpoint URL; tests set this, production never does.
ENDPOINT_URLS: Dict[str, str] = {}

# The IMDS credential fetch (instance profile): one 1 s try per step. Set on the session, so that
# AWS_METADATA_SERVICE_TIMEOUT / _NUM_ATTEMPTS or ~/.aws/config cannot stretch a check's budget.
IMDS_TIMEOUT_S = 1
IMDS_ATTEMPTS = 1


def endpoint_url(service: str) -> Optional[str]:
    """The overridden endpoint URL for ``service``, or None for botocore's default resolution."""
    key = ENV_PREFIX + service.upper().replace("-", "_").replace(".", "_")
    return ENDPOINT_URLS.get(service) or os.environ.get(key) or None


_loader_lock = threading.Lock()
_loader: Any = None


def shared_loader() -> Any:
    """botocore's data loader, one per process: it caches every model and data file it reads."""
    global _loader
    with _loader_lock:
        if _loader is None:
            from botocore.loaders import create_loader

            _loader = create_loader()
        return _loader


def make_client(service: str, region: str, ca_bundle: Optional[str], connect_timeout: float,
                read_timeout: float, *, fips: bool = False, configured_endpoint_urls: bool = False) -> Any:
    """A boto3 client for ``region`` with one attempt (no retries), the given timeouts, our CA
    bundle (plus ``AWS_CA_BUNDLE``) and a bounded IMDS credential fetch. Needs no check context,
    so the publishers use it too.

    ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_<SERVICE>`` and ``endpoint_url`` in the AWS config
    files are ignored unless ``configured_endpoint_urls`` (config ``aws.use_configured_endpoint_urls``):
    a check must call the service's own name, the one whose private path it proves, whatever
    environment Run Command inherited from the SSM agent (the report names such variables)."""
    import botocore.session
    from botocore.config import Config

    # botocore's own client, not boto3's wrapper: the same client class and calls, without importing
    # boto3 and s3transfer (~0.1 s of CPU per process) for methods no check uses.
    session = botocore.session.get_session()
    # Share one data loader: each new session would re-read botocore's service models (the ec2
    # model alone costs ~0.2 s of CPU), every client, every daemon cycle.
    session.register_component("data_loader", shared_loader())
    session.set_config_variable("metadata_service_timeout", IMDS_TIMEOUT_S)
    session.set_config_variable("metadata_service_num_attempts", IMDS_ATTEMPTS)
    ipv6.configure_session(session)  # IPv6-only subnet: credentials from [fd00:ec2::254]
    options: Dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        # total_max_attempts=1: one attempt, no retries (botocore >= 1.15; 1.31 accepts it).
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "user_agent_extra": "vpce-doctor",
        # botocore >= 1.31 (AL2023 ships 1.31.21, which has it).
        "ignore_configured_endpoint_urls": not configured_endpoint_urls,
    }
    if fips:
        options["use_fips_endpoint"] = True
    if service == "s3":
        # The regional name (s3.<region>.amazonaws.com), the one s3.dns resolves, also in us-east-1
        # where botocore's legacy default is the global s3.amazonaws.com.
        options["s3"] = {"us_east_1_regional_endpoint": "regional"}
    verify: Any = ca_bundle_from(ca_bundle) or True
    made = session.create_client(service, region_name=region, config=Config(**options), verify=verify,
                                 endpoint_url=endpoint_url(service))
    _load_ca_bundle_once(made)
    return made


def _load_ca_bundle_once(made: Any) -> None:
    """Parse the client's CA bundle once, not on every new connection.

    botocore hands urllib3 the bundle's path for each connection, and urllib3 loads the whole file
    into the client's (shared) SSL context again every time: ~17 ms of CPU for a system or certifi
    bundle, more than the API call itself — and every run dials afresh (``drop_connections``).
    So the bundle goes into that context once, and the pool stops passing the path on. Only a
    pool that uses this very context is changed (a proxy's pool has its own context and keeps
    botocore's way); on a botocore whose internals differ, nothing is changed at all. Verification
    itself is untouched: the pool still requires a certificate, checked against the same store.
    A bundle edited on disk is read again when the client is rebuilt (e.g. on a config reload).
    """
    try:
        _load_ca_bundle_once_into(made._endpoint.http_session)
    except AttributeError:
        return


def _load_ca_bundle_once_into(http: Any) -> None:
    try:
        context = http._manager.connection_pool_kw["ssl_context"]
        verify = http._verify
        original = http._setup_ssl_cert
        from botocore.httpsession import get_cert_path
    except (AttributeError, KeyError, ImportError, TypeError):
        return
    if not verify or context is None:
        return
    path = get_cert_path(verify)
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ValueError):  # ssl.SSLError is an OSError: botocore reports it on use, as before
        return

    def setup_ssl_cert(conn: Any, url: str, verify_now: Any) -> None:
        original(conn, url, verify_now)
        if getattr(conn, "ca_certs", None) == path and getattr(conn, "conn_kw", {}).get("ssl_context") is context:
            conn.ca_certs = None

    http._setup_ssl_cert = setup_ssl_cert


# Environment variables that decide which credentials (or endpoint) botocore picks: part of a
# cached client's key, so that a changed environment never reuses a client built for the old one.
_CLIENT_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
               "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE",
               "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
               "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL")

_cache_lock = threading.Lock()
_clients: Dict[Tuple[Any, ...], Any] = {}
_building: Dict[Tuple[Any, ...], threading.Lock] = {}  # one lock per client key, held while it is built


def _has_credentials(made: Any) -> bool:
    # A client made while no credentials could be found keeps failing with NoCredentialsError
    # even after an instance profile is attached: never keep one.
    signer = getattr(made, "_request_signer", None)
    return getattr(signer, "_credentials", None) is not None


def client(ctx: Context, service: str, connect_timeout: Optional[float] = None,
           read_timeout: Optional[float] = None) -> Any:
    """A boto3 client for the instance's region with bounded, retry-free calls.

    ``connect_timeout`` defaults to ``settings.connect_timeout_s``, ``read_timeout`` to
    ``settings.api_timeout_s``; both are capped by the check's remaining budget.

    Clients are kept per process (building one costs more CPU than the call it makes, every
    daemon cycle) when they carry credentials and got their full timeouts; the key holds
    everything that shapes a client, including the instance profile ARN, so attaching, detaching
    or replacing the profile builds a new one. Kept clients hold no connection across runs:
    ``drop_connections()`` (the runtime calls it after every run) closes their pools, so each
    run dials, resolves and handshakes afresh — a kept-alive connection would hide a path that
    broke since (security groups keep tracked connections open; DNS is not asked again).
    """
    region = ctx.facts.require("region")
    settings = ctx.settings
    wanted_connect = connect_timeout if connect_timeout is not None else settings.connect_timeout_s
    wanted_read = read_timeout if read_timeout is not None else settings.api_timeout_s
    connect, read = ctx.budget(wanted_connect), ctx.budget(wanted_read)
    if (connect, read) != (wanted_connect, wanted_read):  # a budget-cut client is used once
        return make_client(service, region, settings.ca_bundle, connect, read, fips=settings.fips,
                           configured_endpoint_urls=settings.use_configured_endpoint_urls)
    key = (service, region, settings.ca_bundle, connect, read, settings.fips, endpoint_url(service),
           settings.use_configured_endpoint_urls,
           ctx.facts.instance_profile_arn, tuple(os.environ.get(name) for name in _CLIENT_ENV))
    with _cache_lock:
        kept = _clients.get(key)
        building = _building.setdefault(key, threading.Lock())
    if kept is not None:
        return kept
    # Checks that start together (s3.api and s3.object) wait for one build instead of each making one.
    with building:
        with _cache_lock:
            kept = _clients.get(key)
        if kept is not None:
            return kept
        made = make_client(service, region, settings.ca_bundle, connect, read, fips=settings.fips,
                           configured_endpoint_urls=settings.use_configured_endpoint_urls)
        if _has_credentials(made):
            with _cache_lock:
                made = _clients.setdefault(key, made)
        return made


def drop_connections() -> None:
    """Close every kept client's idle connections (in-flight ones close when they finish)."""
    with _cache_lock:
        kept = list(_clients.values())
        raw = list(_callers.values())
    for made in kept:
        try:
            made._endpoint.http_session.close()
        except Exception:  # noqa: BLE001 - a private botocore attribute: never fail a run over it
            pass
    for caller in raw:
        caller.http.close()


class JsonCaller:
    """Signed AWS JSON 1.1 calls without a service model: what the SSM agent itself sends.

    Two reasons not to use a boto3 client: ``ListInstanceAssociations`` (the agent's own call) is
    not in botocore's public SSM model, and loading that model costs ~0.15 s of CPU per process —
    half the one-shot's whole budget for these checks. Credentials come from botocore's chain
    (the IMDS instance profile on EC2, bounded as for the clients); the HTTP session has the same
    CA bundle, timeouts and environment proxies a client would get.
    """

    def __init__(self, service: str, region: str, endpoint_url: str, credentials: Any, http: Any) -> None:
        self.service, self.region, self.endpoint_url = service, region, endpoint_url
        self.credentials, self.http = credentials, http

    def send(self, target: str, payload: Mapping[str, Any], max_bytes: int) -> Tuple[int, Dict[str, str], bytes]:
        """POST one JSON 1.1 request (``X-Amz-Target: target``): (status, lower-case headers, body ≤ max+1)."""
        import json

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        if self.credentials is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        request = AWSRequest(method="POST", url=self.endpoint_url + "/", data=json.dumps(payload).encode(),
                             headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target,
                                      "User-Agent": "vpce-doctor"}, stream_output=True)
        SigV4Auth(self.credentials.get_frozen_credentials(), self.service, self.region).add_auth(request)
        response = self.http.send(request.prepare())
        try:
            body = response.raw.read(max_bytes + 1)
        finally:
            response.raw.release_conn()
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, body


_callers: Dict[Tuple[Any, ...], JsonCaller] = {}


def json_caller(ctx: Context, service: str) -> JsonCaller:
    """A ``JsonCaller`` for ``service`` in the instance's region, kept per process like the clients."""
    import botocore.session
    from botocore.httpsession import URLLib3Session
    from botocore.utils import get_environ_proxies

    from .hostnames import service_hostname

    region = ctx.facts.require("region")
    settings = ctx.settings
    connect, read = ctx.budget(settings.connect_timeout_s), ctx.budget(settings.api_timeout_s)
    url = endpoint_url(service) or f"https://{service_hostname(service, region, settings.fips)}"
    key = (service, region, settings.ca_bundle, connect, read, url, ctx.facts.instance_profile_arn,
           tuple(os.environ.get(name) for name in _CLIENT_ENV))
    with _cache_lock:
        kept = _callers.get(key)
    if kept is not None:
        return kept
    session = botocore.session.get_session()
    session.set_config_variable("metadata_service_timeout", IMDS_TIMEOUT_S)
    session.set_config_variable("metadata_service_num_attempts", IMDS_ATTEMPTS)
    ipv6.configure_session(session)  # IPv6-only subnet: credentials from [fd00:ec2::254]
    http = URLLib3Session(verify=ca_bundle_from(settings.ca_bundle) or True, proxies=get_environ_proxies(url),
                          timeout=(connect, read), max_pool_connections=4)
    _load_ca_bundle_once_into(http)
    caller = JsonCaller(service, region, url, session.get_credentials(), http)
    if caller.credentials is not None and (connect, read) == (settings.connect_timeout_s, settings.api_timeout_s):
        with _cache_lock:
            caller = _callers.setdefault(key, caller)
    return caller


def environment_notes(use_configured_endpoint_urls: bool, environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """What in the environment changes where AWS calls go, for the report's notes (Run Command
    inherits the SSM agent's environment, so this is not only the operator's shell). Values are
    redacted (a proxy URL may carry a password)."""
    env = os.environ if environ is None else environ
    notes: List[str] = []
    urls = sorted(k for k in env if (k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_")) and env[k])
    if urls:
        shown = ", ".join(f"{k}={redact(env[k])[:120]}" for k in urls[:6]) + (" …" if len(urls) > 6 else "")
        if use_configured_endpoint_urls:
            notes.append(f"AWS calls follow {shown} (aws.use_configured_endpoint_urls is true): their findings prove "
                         "that endpoint, not the service's own name")
        else:
            notes.append(f"ignored {shown} from the environment: the checks call each service's own name "
                         "(aws.use_configured_endpoint_urls: true would follow it)")
    hooks = sorted(k for k in env if k.startswith(ENV_PREFIX) and env[k])
    if hooks:
        notes.append("test hooks redirect AWS calls: " + ", ".join(f"{k}={redact(env[k])[:120]}" for k in hooks[:6]))
    proxies = [(k, v) for k, v in proxy_environment(env).items() if k.lower() != "no_proxy"]
    if proxies:
        no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
        shown = ", ".join(f"{k}={v[:120]}" for k, v in proxies[:3])
        notes.append(f"AWS API calls (ec2.api, s3.api, auth.ssm, session.*, publishers) go through the proxy {shown}"
                     + (f" except NO_PROXY={no_proxy[:200]}" if no_proxy else "")
                     + ", as the SSM agent's would with the same environment; DNS, TCP and TLS checks do not")
    return notes


def forget_clients() -> None:
    """Drop every kept client (tests that switch endpoints or credentials; a config reload)."""
    drop_connections()
    with _cache_lock:
        _clients.clear()
        _callers.clear()
        _building.clear()


def _mark_redirected(context: Dict[str, Any], **_: Any) -> None:
    # botocore's S3RegionRedirector(v2) skips a request it believes it already redirected:
    # v2 (botocore >= 1.28) reads context["s3_redirect"]["redirected"], v1 context["s3_redirected"].
    redirect = context.get("s3_redirect")
    if isinstance(redirect, dict):
        redirect["redirected"] = True
    context["s3_redirected"] = True


def no_region_redirect(s3_client: Any) -> Any:
    """Stop botocore from following S3's 301/400 region redirects, so a bucket in another region
    is seen (and reported) instead of silently fetched from that region.

    botocore registers the redirector per client without keeping a reference, so it can't be
    unregistered; instead every call is marked as already redirected (``before-call`` runs after
    the redirector annotated the request context and before the request is sent).
    """
    s3_client.meta.events.register("before-call.s3", _mark_redirected, unique_id="vpce-doctor-no-redirect")
    return s3_client
