"""One formatter for exceptions (issue 14): class name, where, the OS's words — never a repr."""
from __future__ import annotations

import socket

from botocore import exceptions as bx

from vpce_doctor.checks.errortext import exception_text, without_reprs

REPR = "<botocore.awsrequest.AWSHTTPSConnection object at 0x7fac70b48bd0>"


def test_botocore_transport_errors_read_as_words() -> None:
    timeout = bx.ConnectTimeoutError(endpoint_url="https://s3.us-east-1.amazonaws.com/",
                                     error=f"({REPR}, 'Connection to s3.us-east-1.amazonaws.com timed out. "
                                           "(connect timeout=2)')")
    assert exception_text(timeout) == ("ConnectTimeoutError: no TCP connection to https://s3.us-east-1.amazonaws.com/ "
                                       "within 2 s")
    refused = bx.EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com/",
                                         error=ConnectionRefusedError(111, "Connection refused"))
    assert exception_text(refused) == ("EndpointConnectionError: https://ssm.us-east-1.amazonaws.com/: "
                                       "Connection refused (errno ECONNREFUSED)")
    tls = bx.SSLError(endpoint_url="https://kms.us-east-1.amazonaws.com/",
                      error="[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
                            "certificate (_ssl.c:1006)")
    assert "CERTIFICATE_VERIFY_FAILED" in exception_text(tls) and "0x" not in exception_text(tls)


def test_name_errors_keep_their_words() -> None:
    err = socket.gaierror(-2, "Name or service not known")
    assert "Name or service not known" in exception_text(err)


def test_no_repr_survives() -> None:
    text = f"ConnectTimeoutError ({REPR}, 'timed out') and <AWSHTTPSConnection(host='h', port=443) at 0x7f00>"
    assert "0x" not in without_reprs(text) and "timed out" in without_reprs(text)
    assert exception_text(ValueError(f"odd {REPR} answer")) == "ValueError: odd answer"
    assert without_reprs("plain text") == "plain text"


def test_an_ssl_error_number_is_not_an_os_errno() -> None:
    """ssl.SSLError.errno 1 is OpenSSL's code for a failed verification, not EPERM."""
    import ssl

    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                                          "unable to get local issuer certificate (_ssl.c:1006)")
    text = exception_text(exc)
    assert "EPERM" not in text and "not permitted" not in text and "CERTIFICATE_VERIFY_FAILED" in text
