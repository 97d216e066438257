"""The parts of SSH clusters that need no network: addresses, errors, wheels, path remapping."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import zipfile

import pytest

import tether as rh
from tether.core.packaging import ImportSpec
from tether.launchers.ssh import codesync, wheelhouse
from tether.launchers.ssh import openssh as ssh
from tether.launchers.ssh.launcher import parse_address


@pytest.mark.parametrize(("entry", "expected"), [
    ("10.0.0.5", ("10.0.0.5", "me", 22)),
    ("alice@10.0.0.5", ("10.0.0.5", "alice", 22)),
    ("alice@10.0.0.5:2222", ("10.0.0.5", "alice", 2222)),
    ("box.example.org:2200", ("box.example.org", "me", 2200)),
    ("[fe80::1]:22", ("fe80::1", "me", 22)),
], ids=["ip", "user", "user-port", "name-port", "ipv6"])
def test_addresses(entry, expected):
    assert parse_address(entry, "me", 22) == expected


@pytest.mark.parametrize(("stderr", "kind", "words"), [
    ("u@h: Permission denied (publickey).", rh.AuthenticationError, "authorized_keys"),
    ("ssh: connect to host h port 22: Connection refused", rh.ConnectionError, "refused the SSH connection"),
    ("ssh: connect to host h port 22: No route to host", rh.ConnectionError, "cannot reach"),
    ("ssh: connect to host h port 22: Connection timed out", rh.ConnectionError, "cannot reach"),
    ("Host key verification failed.", rh.ConnectionError, "ssh-keygen -R"),
], ids=["auth", "refused", "no-route", "timeout", "host-key"])
def test_ssh_failures_become_tether_errors_naming_the_host(stderr, kind, words):
    target = ssh.SshTarget(host="10.9.9.9", user="me", cluster="rack")
    err = ssh.translate(target, stderr)
    assert type(err) is kind and words in str(err) and "10.9.9.9" in str(err)
    assert (err.node, err.cluster) == ("10.9.9.9", "rack")


def test_a_password_is_never_on_the_command_line():
    target = ssh.SshTarget(host="h", user="me", password="hunter2")
    assert "hunter2" not in " ".join(target.options())
    assert target.env()["TETHER_SSH_PASSWORD"] == "hunter2"
    assert "BatchMode=no" in target.options()


def test_node_tags_follow_python_and_glibc():
    node = wheelhouse.NodePython("/usr/bin/python3", (3, 12, 1), "x86_64", ("glibc", "2.36"))
    names = {str(t) for t in node.tags}
    assert "cp312-cp312-manylinux_2_17_x86_64" in names and "py3-none-any" in names
    assert "cp311-cp311-manylinux_2_17_x86_64" not in names
    assert not any("manylinux_2_38" in n for n in names)


def test_requirements_pin_the_versions_installed_here():
    here = wheelhouse.NodePython.here()
    pins = dict(wheelhouse.requirements(here))
    assert pins["cloudpickle"] == md.version("cloudpickle")
    assert "pytest" not in pins  # an extra (dev), not a runtime dependency
    assert "tether" not in pins


def test_a_repacked_distribution_installs_with_bytecode_that_needs_no_compiling(tmp_path):
    import iniconfig  # noqa: F401 - its pyc is current (written now if the install did not)

    wheel = wheelhouse._repack(md.distribution("iniconfig"), tmp_path)
    assert wheel is not None and wheel.name.startswith("iniconfig-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert any(n.endswith(".dist-info/RECORD") for n in names)
    pyc = f"iniconfig/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"
    assert pyc in names  # this interpreter's bytecode, as a checked-hash pyc
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--no-compile",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    source = target / "iniconfig" / "__init__.py"
    os.utime(source, (1, 1))  # the installer's mtime, whatever it is, does not matter
    shipped = (target / pyc).read_bytes()
    assert int.from_bytes(shipped[4:8], "little") == 0b11
    subprocess.run([sys.executable, "-c", "import iniconfig"], check=True, env={**os.environ, "PYTHONPATH": str(target)})
    assert (target / pyc).read_bytes() == shipped  # used as it is: not compiled again
    source.write_text(source.read_text() + "\nEDITED = True\n")
    out = subprocess.run([sys.executable, "-c", "import iniconfig; print(iniconfig.EDITED)"], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(target)}).stdout
    assert out.strip() == "True"  # an edited source is compiled anew: the pyc checks its hash


def test_aes_gcm_first_on_cpus_with_aes_unless_told(monkeypatch):
    monkeypatch.delenv("TETHER_SSH_CIPHERS", raising=False)
    target = ssh.SshTarget(host="h", user="me")
    monkeypatch.setattr(ssh, "_cpu_has_aes", lambda: True)
    assert f"Ciphers={ssh.AES_FIRST}" in target.options()
    monkeypatch.setattr(ssh, "_cpu_has_aes", lambda: False)
    assert not any(o.startswith("Ciphers=") for o in target.options())
    monkeypatch.setenv("TETHER_SSH_CIPHERS", "aes256-ctr")
    assert "Ciphers=aes256-ctr" in target.options()
    monkeypatch.setenv("TETHER_SSH_CIPHERS", "")
    monkeypatch.setattr(ssh, "_cpu_has_aes", lambda: True)
    assert not any(o.startswith("Ciphers=") for o in target.options())


def test_a_repacked_distribution_keeps_its_data_files(tmp_path):
    """ipykernel's kernel spec lives under the env's share/ (outside site-packages): it goes back
    into the wheel's .data/data/, where pip installs it under the node env's prefix."""
    pytest.importorskip("ipykernel")
    dist = md.distribution("ipykernel")
    wheel = wheelhouse._repack(dist, tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert f"ipykernel-{dist.version}.data/data/share/jupyter/kernels/python3/kernel.json" in names
    assert not any("/bin/" in n or n.startswith("bin/") for n in names)  # scripts stay out


def test_from_local_packages_use_the_installed_closure_when_it_fits():
    installed = md.version("iniconfig")
    assert wheelhouse._installed_roots(["iniconfig", f"iniconfig=={installed}"]) == (
        ("iniconfig", frozenset()), ("iniconfig", frozenset()))
    assert wheelhouse._installed_roots(["iniconfig<0.1"]) is None  # another version: pip download
    assert wheelhouse._installed_roots(["not-installed-here-xyz"]) is None
    old = wheelhouse.NodePython("/usr/bin/python3", (3, 11, 0), "x86_64", ("glibc", "2.36"))
    new = wheelhouse.NodePython("/usr/bin/python3", (3, 99, 0), "x86_64", ("glibc", "2.36"))
    assert wheelhouse._fits_python("cloudpickle", new)
    requires = md.metadata("tether").get("Requires-Python")  # >=3.11
    assert wheelhouse._fits_python("tether", old) == (requires in (None, ">=3.11"))


def test_path_entries_point_into_the_synced_folder(tmp_path):
    root = tmp_path / "proj"
    spec = ImportSpec("pkg.mod", "fn", (str(root / "src"),), str(root))
    assert codesync.sync_root(spec) == root
    remote = codesync.remap(spec, root, "/home/u", "rack")
    base = f"/home/u/{codesync.remote_dir('rack', root)}"
    assert remote.path_entries == (f"{base}/src",) and remote.project_root == base
    assert codesync.sync_root(ImportSpec("json", "dumps", (), None)) is None


def test_env_compute_round_trips_and_is_checked():
    env = rh.env(name="gpu", compute={"node_idx": 1})
    assert rh.Env.from_config(env.config()).compute == {"node_idx": 1}
    assert "compute" not in rh.env(name="plain").config()
    with pytest.raises(rh.ConfigError, match="node index"):
        rh.env(compute={"node_idx": -1})


def test_ips_mean_the_ssh_launcher():
    cluster = rh.cluster(name="inferred", ips=["10.0.0.1"], ssh_creds={"ssh_user": "me", "password": "pw"})
    assert cluster.launcher_name == "ssh"
    assert cluster.config()["spec"]["ssh_creds"] == {"ssh_user": "me"}  # the password stays out
    assert cluster.ips == ["10.0.0.1"]


@pytest.mark.parametrize("extra", [0, 5, 10, 20, 40, 80], ids=lambda n: f"+{n}")
def test_control_sockets_fit_in_sun_path_whatever_tether_home_is(tmp_path, monkeypatch, extra):
    """ssh binds ``<ControlPath>.<16 random characters>`` first: that must fit in sun_path (108
    bytes with its NUL), or ssh fails with "too long for Unix domain socket" (seen with pytest's
    long tmp paths). A home too long for it puts the sockets under /tmp."""
    home = tmp_path / ("h" * extra)
    monkeypatch.setenv("TETHER_HOME", str(home))
    path = ssh.control_path(ssh.SshTarget(host="10.0.0.1", user="someone"))
    assert len(str(path)) + 17 <= 107
