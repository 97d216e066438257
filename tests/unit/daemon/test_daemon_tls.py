"""The daemon's side of TLS: which listeners speak it, and the certificate it makes."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat

from tether.daemon.tls import make_certificate, server_context, wants_tls


def test_auto_means_tls_off_loopback_only():
    assert not wants_tls("auto", "127.0.0.1") and not wants_tls("auto", "127.0.0.2")
    assert not wants_tls("auto", "localhost") and not wants_tls("auto", "::1")
    assert wants_tls("auto", "10.0.0.6") and wants_tls("auto", "0.0.0.0") and wants_tls("auto", "")
    assert wants_tls("auto", "node6.example.com")
    assert wants_tls("on", "127.0.0.1") and not wants_tls("off", "10.0.0.6")


def test_the_certificate_is_private_and_its_fingerprint_is_what_a_client_sees(tmp_path):
    cert, key, fingerprint = make_certificate(tmp_path, "rack", ["10.0.0.6"])
    assert (cert.name, key.name) == ("tls.crt", "tls.key")
    for path in (cert, key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert hashlib.sha256(der).hexdigest() == fingerprint
    ctx = server_context(cert, key)  # the key matches the certificate
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    again = make_certificate(tmp_path, "rack", ["10.0.0.6"])[2]
    assert again != fingerprint  # each daemon start makes its own
