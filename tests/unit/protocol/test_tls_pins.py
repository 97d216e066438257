"""Pins: the fingerprint's form, and the check a caller and a head do before sending anything."""

from __future__ import annotations

import hashlib

import pytest

from tether.protocol import tls


def test_normalize_accepts_the_usual_spellings_of_a_sha256():
    digest = hashlib.sha256(b"cert").hexdigest()
    colons = ":".join(digest[i:i + 2] for i in range(0, 64, 2)).upper()  # openssl x509 -fingerprint
    assert tls.normalize(digest) == tls.normalize(colons) == tls.normalize(f"sha256:{digest}") == digest
    for bad in ("", "abc", digest[:-1], digest + "00", "zz" * 32):
        with pytest.raises(ValueError, match="64 hex digits"):
            tls.normalize(bad)


def test_check_pin_passes_the_pinned_certificate_only():
    der = b"a certificate in DER"
    tls.check_pin(der, hashlib.sha256(der).hexdigest(), "node 1")
    with pytest.raises(tls.PinMismatch, match=r"node 1 presented a TLS certificate .*nothing was sent") as info:
        tls.check_pin(b"another one", hashlib.sha256(der).hexdigest(), "node 1")
    assert isinstance(info.value, OSError)  # the transports' error boundaries catch it as one
    with pytest.raises(tls.PinMismatch, match="no certificate"):
        tls.check_pin(None, hashlib.sha256(der).hexdigest(), "node 1")


def test_the_client_context_checks_no_ca_and_no_host_name():
    import ssl

    ctx = tls.client_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
