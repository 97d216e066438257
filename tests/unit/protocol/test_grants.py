"""Grants signed by a registry key and verified with its public key only."""

import pytest

from tether.protocol import grants


@pytest.fixture(scope="module")
def key():
    return grants.new_private_key()


def test_a_grant_verifies_with_the_public_key(key):
    token = grants.sign(key, user="bob", cluster="/alice/gpu", access="read", issuer="http://reg")
    assert grants.looks_like_grant(token) and grants.looks_like_grant(token.encode())
    grant = grants.verify(token, grants.public_key(key), cluster="/alice/gpu")
    assert (grant.user, grant.cluster, grant.access, grant.issuer) == ("bob", "/alice/gpu", "read", "http://reg")
    assert not grant.can_write and grant.expires - grant.issued == grants.DEFAULT_TTL


def test_forged_expired_and_other_cluster_grants_are_refused(key):
    other = grants.new_private_key()
    forged = grants.sign(other, user="mallory", cluster="/alice/gpu", access="write")
    with pytest.raises(grants.GrantError, match="bad signature"):
        grants.verify(forged, grants.public_key(key))
    old = grants.sign(key, user="bob", cluster="/alice/gpu", access="read", ttl=60, now=1000.0)
    with pytest.raises(grants.GrantError, match="expired"):
        grants.verify(old, grants.public_key(key), now=1000.0 + 60 + grants.CLOCK_SKEW + 1)
    assert grants.verify(old, grants.public_key(key), now=1000.0 + 60).user == "bob"  # within skew
    good = grants.sign(key, user="bob", cluster="/alice/gpu", access="write")
    with pytest.raises(grants.GrantError, match="not '/alice/cpu'"):
        grants.verify(good, grants.public_key(key), cluster="/alice/cpu")
    # the claims cannot be edited: read -> write breaks the signature
    body, sig = grants.sign(key, user="bob", cluster="/c", access="read").rsplit(".", 1)
    claims = grants._unb64(body[len(grants.PREFIX):]).replace(b'"read"', b'"write"')
    tampered = f"{grants.PREFIX}{grants._b64(claims)}.{sig}"
    with pytest.raises(grants.GrantError, match="bad signature"):
        grants.verify(tampered, grants.public_key(key))


@pytest.mark.parametrize("token", ["", "Bearer x", "tg1.", "tg1.abc", "tg1.abc.def", "tg1.!!.??"])
def test_malformed_grants_are_refused(key, token):
    with pytest.raises(grants.GrantError):
        grants.verify(token, grants.public_key(key))


def test_an_unknown_access_level_cannot_be_signed(key):
    with pytest.raises(ValueError, match="access"):
        grants.sign(key, user="bob", cluster="/c", access="admin")
