"""builder.ship.ssh against real sshd on 127.0.0.1 serving a throwaway Debian root (no mocks)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time

import pytest

from builder.errors import RemoteError
from builder.ship.ssh import connect
from builder.ship.sshconfig import ConnectOptions, HostSpec
from hostlab.sshhost import free_port, port_open

root = pytest.mark.root
MiB = 1 << 20


def _keygen(path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(open(f"{path}.pub").read().split()[:2])


def _fingerprint(pub_line: str, tmp_path) -> str:
    (tmp_path / "k.pub").write_text(pub_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


# -- running commands ---------------------------------------------------------------------


@root
def test_run_returns_exit_code_stdout_stderr_and_quotes_arguments(ssh_host):
    with ssh_host.connect() as conn:
        r = conn.run(["printf", "%s|", "a b", "$HOME", "it's", "*"])
        assert (r.exit_code, r.stdout, r.stderr, r.ok) == (0, "a b|$HOME|it's|*|", "", True)
        r = conn.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (r.exit_code, r.stdout, r.stderr, r.ok) == (3, "out\n", "err\n", False)
        assert r.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
        assert conn.run(["sh", "-c", 'echo "$GREETING"'], env={"GREETING": "hi there"}).stdout == "hi there\n"
        assert conn.run(["no-such-command"]).exit_code == 127


@root
def test_5_mib_of_stdout_and_5_mib_of_stderr_interleaved_do_not_deadlock(ssh_host):
    script = (
        "import sys\n"
        "o, e = sys.stdout.buffer, sys.stderr.buffer\n"
        "for i in range(80):\n"
        "    o.write(bytes([65 + i % 26]) * 65536); o.flush()\n"
        "    e.write(bytes([97 + i % 26]) * 65536); e.flush()\n"
    )
    with ssh_host.connect() as conn:
        r = conn.run(["python3", "-c", script], timeout=120)
    assert r.exit_code == 0
    assert len(r.stdout) == len(r.stderr) == 5 * MiB
    expect_out = b"".join(bytes([65 + i % 26]) * 65536 for i in range(80)).decode()
    assert r.stdout == expect_out and r.stderr == expect_out.lower()


@root
def test_stdin_is_fed_while_output_is_drained(ssh_host):
    data = os.urandom(3 * MiB)
    with ssh_host.connect() as conn:
        r = conn.run(["sh", "-c", "cat | base64 -w0"], stdin=data, timeout=120)
        assert r.ok and base64.b64decode(r.stdout) == data
        assert conn.run(["cat"]).stdout == ""  # no stdin: EOF at once, no hang


@root
def test_timeout_names_the_command(ssh_host):
    with ssh_host.connect() as conn:
        with pytest.raises(RemoteError, match=r"`sleep 30` still running after 1 s"):
            conn.run(["sleep", "30"], timeout=1)
        assert conn.run(["true"]).ok  # the connection survives a timed-out command


@root
def test_sudo_runs_as_root(ssh_host):
    with ssh_host.connect() as conn:
        assert conn.run(["id", "-u"]).stdout == "1000\n"
        r = conn.run(["id", "-un"], sudo=True)
        assert (r.exit_code, r.stdout, r.stderr) == (0, "root\n", "")
        r = conn.run(["sh", "-c", 'echo "$X"; exit 4'], sudo=True, env={"X": "y z"})
        assert (r.exit_code, r.stdout) == (4, "y z\n")


@root
def test_sudo_wanting_a_password_is_a_clear_error(make_ssh_hosts):
    (host,) = make_ssh_hosts(1, sudo_password=True)
    with host.connect() as conn:
        assert conn.run(["id", "-un"]).stdout == "ops\n"
        with pytest.raises(
            RemoteError,
            match=r"host ops@127\.0\.0\.1:\d+: sudo wants a password for user ops; "
            r"give ops passwordless sudo \(NOPASSWD\)",
        ):
            conn.run(["true"], sudo=True)


# -- upload --------------------------------------------------------------------------------


@root
def test_put_20_mb_and_sha256_round_trip(ssh_host, tmp_path):
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(20 * 10**6))
    seen = []
    with ssh_host.connect() as conn:
        conn.put(local, "/var/tmp/big.bin", progress=lambda done, total: seen.append((done, total)))
        assert conn.sha256("/var/tmp/big.bin") == hashlib.sha256(local.read_bytes()).hexdigest()
        assert conn.run(["ls", "/var/tmp"]).stdout.split() == ["big.bin"]  # no .part left
    assert seen[-1] == (20 * 10**6, 20 * 10**6)
    assert (ssh_host.root.path / "var/tmp/big.bin").read_bytes() == local.read_bytes()


@root
def test_put_where_the_user_may_not_write_and_sha256_of_a_missing_file(ssh_host, tmp_path):
    (tmp_path / "f").write_text("x")
    with ssh_host.connect() as conn:
        with pytest.raises(
            RemoteError,
            match=r"upload of .* to /root/f failed .*check that /root exists "
            r"and ops may write",
        ):
            conn.put(tmp_path / "f", "/root/f")
        with pytest.raises(RemoteError, match=r"cannot checksum /nope: .*No such file"):
            conn.sha256("/nope")


# -- connecting ----------------------------------------------------------------------------


@root
def test_connect_retries_while_sshd_starts_late(ssh_host):
    ssh_host.stop()
    ssh_host.start(delay=5)
    assert not port_open(ssh_host.port)  # nothing listens yet: connect must retry to succeed
    with ssh_host.connect(connect_timeout=60) as conn:
        assert conn.run(["true"]).ok


def test_unreachable_port_fails_within_the_timeout(tmp_path):
    port = free_port()
    opts = ConnectOptions(connect_timeout=3, known_hosts=tmp_path / "kh", ssh_config=tmp_path / "none", use_agent=False)
    with pytest.raises(
        RemoteError,
        match=rf"host ops@127\.0\.0\.1:{port}: no SSH after 3 s \(last error: "
        r"ConnectionRefusedError.*\); check the address/port and that sshd runs",
    ):
        connect(HostSpec.parse(f"ops@127.0.0.1:{port}"), opts)


@root
def test_reconnect_after_a_restart_and_a_lost_connection_is_reported(ssh_host):
    conn = ssh_host.connect()
    try:
        assert conn.run(["true"]).ok
        ssh_host.restart()
        with pytest.raises(RemoteError, match=r"connection lost while running `true`|not connected"):
            for _ in range(3):  # the first send may still be buffered before the reset arrives
                conn.run(["true"])
                time.sleep(0.2)
        assert conn.reconnect().run(["true"]).ok
    finally:
        conn.close()


@root
def test_auth_failure_with_a_wrong_key_fails_fast_and_clearly(ssh_host, tmp_path):
    _keygen(tmp_path / "wrong")
    # Not retried: a retry would end after connect_timeout with "no SSH after 120 s" instead.
    with pytest.raises(
        RemoteError,
        match=r"authentication failed for user 'ops' \(tried: .*wrong\); "
        r"check the user name .* ~ops/\.ssh/authorized_keys",
    ):
        ssh_host.connect(identity_file=tmp_path / "wrong", connect_timeout=120)
    with pytest.raises(RemoteError, match=r"authentication failed for user 'nobody'"):
        connect(HostSpec("127.0.0.1", "nobody", ssh_host.port), ssh_host.options())


# -- host keys -----------------------------------------------------------------------------


@root
def test_accept_new_records_the_key_then_refuses_a_changed_one(ssh_host):
    with ssh_host.connect(host_keys="accept-new") as conn:
        assert conn.run(["true"]).ok
    recorded = ssh_host.known_hosts.read_text()
    assert recorded == ssh_host.known_hosts_line
    with ssh_host.connect(host_keys="accept-new") as conn:  # known and unchanged: fine
        assert conn.run(["true"]).ok
    # ssh-keygen (OpenSSH) finds the entry we wrote
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{ssh_host.port}", "-f", str(ssh_host.known_hosts)],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and ssh_host.host_key_line in found.stdout

    ssh_host.rotate_host_key()
    hint = f"ssh-keygen -R '[127.0.0.1]:{ssh_host.port}' -f '{ssh_host.known_hosts}'"
    with pytest.raises(RemoteError, match=r"host key CHANGED .*if the host was rebuilt, run: ") as err:
        ssh_host.connect(host_keys="accept-new")
    assert hint in str(err.value) and "\n" not in str(err.value)
    assert ssh_host.known_hosts.read_text() == recorded  # nothing overwritten
    subprocess.run(hint, shell=True, check=True, capture_output=True)  # the hint works as written
    with ssh_host.connect(host_keys="accept-new") as conn:
        assert conn.run(["true"]).ok


@root
def test_strict_refuses_an_unknown_host_and_accepts_a_known_one(ssh_host):
    with pytest.raises(
        RemoteError,
        match=r"host key ssh-ed25519 SHA256:\S+ for \[127\.0\.0\.1\]:\d+ "
        r"is not in .* \(strict\); verify it and add it",
    ):
        ssh_host.connect(host_keys="strict")
    assert ssh_host.known_hosts.read_text() == ""
    other = "# a comment\n@cert-authority *.example ssh-ed25519 AAAA\nnot a key line\n"
    ssh_host.known_hosts.write_text(other + ssh_host.known_hosts_line)
    with ssh_host.connect(host_keys="strict") as conn:
        assert conn.run(["true"]).ok


@root
def test_strict_accepts_a_hashed_known_hosts_entry(ssh_host):
    ssh_host.known_hosts.write_text(ssh_host.known_hosts_line)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(ssh_host.known_hosts)], check=True, capture_output=True)
    assert ssh_host.known_hosts.read_text().startswith("|1|")
    with ssh_host.connect(host_keys="strict") as conn:
        assert conn.run(["true"]).ok


@root
def test_pin_accepts_the_right_key_or_fingerprint_and_refuses_another(ssh_host, tmp_path):
    right = ssh_host.host_key_line
    for pin in (right, right + " root@host", _fingerprint(right, tmp_path)):
        with ssh_host.connect(host_keys="pin", pinned_key=pin) as conn:
            assert conn.run(["true"]).ok
    wrong = _keygen(tmp_path / "other")
    for pin in (wrong, _fingerprint(wrong, tmp_path)):
        with pytest.raises(RemoteError, match=r"host key ssh-ed25519 SHA256:\S+ is not the pinned key"):
            ssh_host.connect(host_keys="pin", pinned_key=pin)
    with pytest.raises(RemoteError, match=r"host_keys='pin' needs pinned_key"):
        ssh_host.connect(host_keys="pin")
    assert ssh_host.known_hosts.read_text() == ""  # pin neither reads nor writes known_hosts


# -- ~/.ssh/config and ProxyJump -------------------------------------------------------------


@root
def test_proxyjump_from_ssh_config_goes_through_the_jump_host(make_ssh_hosts, tmp_path):
    target, jump = make_ssh_hosts(2)
    config = tmp_path / "ssh_config"
    config.write_text(f"""\
Host target
    HostName 127.0.0.1
    Port {target.port}
    User ops
    IdentityFile {target.key_path}
    ProxyJump bastion

Host bastion
    HostName 127.0.0.1
    Port {jump.port}
    User ops
    IdentityFile {jump.key_path}
""")
    target.run_root(["sh", "-c", "echo target > /etc/debship-marker"])
    opts = ConnectOptions(connect_timeout=30, known_hosts=tmp_path / "known_hosts", ssh_config=config, use_agent=False)
    conn = connect(HostSpec.parse("target"), opts)
    try:
        assert conn.run(["cat", "/etc/debship-marker"]).stdout == "target\n"
        assert conn.user == "ops"
        # both hops were checked and recorded (accept-new)
        assert (tmp_path / "known_hosts").read_text() == jump.known_hosts_line + target.known_hosts_line
        jump.stop()  # the jump host carries the session: without it the target is gone
        with pytest.raises(RemoteError, match=r"host target: (connection lost|not connected)"):
            for _ in range(3):
                conn.run(["true"])
                time.sleep(0.2)
    finally:
        conn.close()


@root
def test_a_known_key_of_another_type_is_asked_for_not_reported_as_changed(ssh_host, tmp_path):
    ssh_host.run_root(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", "/etc/ssh/ssh_host_rsa_key"])
    with open(ssh_host.root.path / "etc/ssh/debship_test_sshd_config", "a") as config:
        config.write("HostKey /etc/ssh/ssh_host_rsa_key\n")
    ssh_host.restart()
    rsa = " ".join((ssh_host.root.path / "etc/ssh/ssh_host_rsa_key.pub").read_text().split()[:2])
    ssh_host.known_hosts.write_text(f"[127.0.0.1]:{ssh_host.port} {rsa}\n")  # only the RSA key is known
    with ssh_host.connect(host_keys="strict") as conn:
        assert conn.run(["true"]).ok
    with ssh_host.connect(host_keys="pin", pinned_key=rsa) as conn:
        assert conn.run(["true"]).ok
