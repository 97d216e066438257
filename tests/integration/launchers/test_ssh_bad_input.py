"""Bad input for SSH clusters: each error names the host and what to do, and leaves nothing
started behind."""

from __future__ import annotations

import pytest
from hosts import running_daemon

import tether as rh

pytestmark = pytest.mark.timeout(180)

PYENV = "/root/.pyenv/versions"


def _pyenv(minor: str) -> str:
    import glob

    found = sorted(glob.glob(f"{PYENV}/{minor}.*"))
    if not found:
        pytest.skip(f"no Python {minor} under {PYENV} to give a test host")
    return found[-1]


def _no_venv(host) -> bool:
    return host.ssh("test -e ~/.tether/venv", check=False).returncode != 0


def test_unknown_key_is_an_authentication_error_naming_the_host(ssh_hosts, ssh_cluster, test_hosts):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host, creds=host.ssh_creds(ssh_private_key=str(test_hosts.bad_key)))
    with pytest.raises(rh.AuthenticationError, match=rf"{host.ip}.*authorized_keys") as info:
        cluster.up_if_not()
    assert info.value.node == host.ip
    assert running_daemon(host, cluster.name) is None


def test_wrong_user_is_an_authentication_error(ssh_hosts, ssh_cluster):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host, creds=host.ssh_creds(ssh_user="nobody-here"))
    with pytest.raises(rh.AuthenticationError, match="nobody-here"):
        cluster.up_if_not()


def test_wrong_password_is_an_authentication_error(ssh_hosts, ssh_cluster):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host, creds={"ssh_user": host.user, "password": "not the password"})
    with pytest.raises(rh.AuthenticationError, match="the password"):
        cluster.up_if_not()


def test_closed_port_is_a_connection_error(ssh_hosts, ssh_cluster):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host, ssh_port=2222)
    with pytest.raises(rh.ConnectionError, match=rf"{host.ip} refused the SSH connection on port 2222"):
        cluster.up_if_not()


def test_unreachable_address_fails_within_the_connect_timeout(test_hosts, ssh_hosts, ssh_cluster):
    cluster = ssh_cluster(ssh_hosts[0], ips=[test_hosts.unused_ip])
    with pytest.raises(rh.ConnectionError, match=rf"cannot reach {test_hosts.unused_ip}:22") as info:
        cluster.up_if_not()
    assert not isinstance(info.value, rh.AuthenticationError)


def test_missing_python3(test_hosts, ssh_cluster):
    [host] = test_hosts.create(1, hide_python=True)
    cluster = ssh_cluster(host)
    with pytest.raises(rh.LaunchError, match=rf"{host.ip}.*no python3 on its PATH.*python="):
        cluster.up_if_not()
    assert _no_venv(host)


def test_python_too_old(test_hosts, ssh_cluster):
    [host] = test_hosts.create(1, python=_pyenv("3.10"))
    cluster = ssh_cluster(host)
    with pytest.raises(rh.LaunchError, match=rf"{host.ip}.*too old.*Python 3\.10.*>= 3\.11"):
        cluster.up_if_not()
    assert _no_venv(host)


def test_python_minor_without_fitting_wheels(test_hosts, ssh_cluster, monkeypatch):
    """A node on another Python minor needs wheels built for it; with no index to download them
    from (an air-gapped caller), the error says so and how to proceed."""
    [host] = test_hosts.create(1, python=_pyenv("3.12"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    cluster = ssh_cluster(host)
    with pytest.raises(rh.LaunchError, match=rf"{host.ip}.*Python 3\.12.*install_from='index'"):
        cluster.up_if_not()
    assert _no_venv(host)


def test_one_bad_node_starts_nothing_on_the_others(test_hosts, ssh_hosts, ssh_cluster):
    [bad] = test_hosts.create(1, hide_python=True)
    good = ssh_hosts[0]
    cluster = ssh_cluster([good, bad])
    with pytest.raises(rh.LaunchError, match=rf"node 1 .*{bad.ip}.*no python3"):
        cluster.up_if_not()
    assert running_daemon(good, cluster.name) is None
    assert not cluster.is_up()


def test_strict_host_key_checking_refuses_an_unknown_host(ssh_hosts, ssh_cluster, tmp_path, monkeypatch):
    host = ssh_hosts[0]
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "fresh-home"))  # no known host keys yet
    cluster = ssh_cluster(host, creds=host.ssh_creds(strict_host_key_checking="yes"))
    with pytest.raises(rh.ConnectionError, match=rf"host key of {host.ip} is not trusted"):
        cluster.up_if_not()


@pytest.mark.parametrize(("spec", "match"), [
    ({"ips": []}, "needs ips"),
    ({"ips": ["10.0.0.1"], "ssh_creds": {"ssh_private_key": "/no/such/key"}}, "does not exist"),
    ({"ips": ["10.0.0.1"], "ssh_creds": {"user": "me"}}, "does not take user"),
    ({"ips": ["10.0.0.1"], "ssh_port": "22"}, "port number"),
    ({"ips": ["10.0.0.1"], "install_from": "ftp"}, "install_from"),
    ({"ips": ["a@b@c"]}, "bad address"),
], ids=["no-ips", "missing-key", "unknown-cred", "bad-port", "bad-install-from", "bad-address"])
def test_bad_specs_fail_at_definition(spec, match):
    with pytest.raises(rh.ConfigError, match=match):
        rh.cluster(name="bad-spec", launcher="ssh", **spec)
