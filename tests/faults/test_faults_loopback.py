"""The fault tier on loopback hosts (a chroot with its own sshd on 127.0.0.1): each
fault is produced for real, then the host's final state is asserted: dpkg
knows the version and nothing is left half-installed, no staging is left in
/var/tmp, the store's index lists exactly its files, and a plain second ship
converges.  docs/reliability.md lists each fault with the test here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.build import build_deb
from tests.harness import hoststate as _state
from tests.harness.project import copy_sample
from tests.harness.shipping import dpkg_lock_held, installed, run_ship

pytestmark = pytest.mark.root
NAME = "fleet-agent"
STORE = f"var/lib/debship/{NAME}"
LOG = f"var/log/{NAME}/deploy.log"
DEBSHIP = Path(sys.executable).with_name("debship")


def slow_startup(project: Path, seconds: int) -> None:
    """startup.py sleeps first: the postinst is still running for ``seconds``."""
    startup = project / "scripts" / "startup.py"
    text = startup.read_text()
    cut = text.index("\n") + 1
    startup.write_text(text[:cut] + f"import time; time.sleep({seconds})\n" + text[cut:])


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """1.0.0; a 2.0.0 with a 6 MB incompressible file (uploads take a while) and a startup.py
    that sleeps 8 s (its postinst takes a while)."""
    base = tmp_path_factory.mktemp("fault-debs")
    project = copy_sample(base / "project")
    out = {"v1": build_deb(project, base / "v1", version="1.0.0").path}
    (project / "scripts" / "blob.bin").write_bytes(os.urandom(6_000_000))
    slow_startup(project, 8)
    out["v2"] = build_deb(project, base / "v2", version="2.0.0").path
    return out


def assert_known_state(host, version: str | None) -> None:
    """At ``version`` and fully configured (or, with None, not installed); nothing half-done."""
    if version is None:
        assert installed(host) == "" and _state.dpkg_audit(host) == ""
    else:
        assert _state.assert_known_state(host, NAME, {version}) == version


def converges(host, deb: Path, version: str) -> None:
    r = run_ship([host], deb)
    assert r.exit_code == 0, r.output + r.stderr
    assert_known_state(host, version)


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(0.1)


def postinst_running(host, version: str) -> bool:
    log = host.root.path / LOG
    return (
        log.exists()
        and f"{NAME} {version} postinst configure" in log.read_text()
        and "startup /usr/lib/fleet-agent/startup.py: running" in log.read_text().rsplit("begin", 1)[-1]
    )


class Relay:
    """A TCP relay on 127.0.0.1 to the host's sshd that cuts every connection once ``cut_after``
    bytes went from the client to the host: an SSH session dropped mid-upload."""

    def __init__(self, port: int, cut_after: int):
        self.target, self.cut_after, self.cuts = port, cut_after, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                sent += len(data) if counted else 0
                if counted and sent > self.cut_after:
                    self.cuts += 1
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


def test_connection_cut_mid_upload(ssh_host, debs):
    converges(ssh_host, debs["v1"], "1.0.0")
    relay = Relay(ssh_host.port, cut_after=2_000_000)
    try:
        argv = [str(debs["v2"]), "--host", f"ops@127.0.0.1:{relay.port}", *ssh_host.ship_args()]
        from builder.cli import ship
        from tests.harness.helpers import cli_runner

        r = cli_runner().invoke(ship, [*argv, "--connect-timeout", "5"], env={"SSH_AUTH_SOCK": ""})
    finally:
        relay.close()
    assert r.exit_code == 1 and relay.cuts == 1, r.output + r.stderr
    assert "connection lost" in r.stderr or "upload of" in r.stderr, r.stderr
    assert installed(ssh_host) == "ii 1.0.0"  # untouched
    converges(ssh_host, debs["v2"], "2.0.0")  # and the cut upload's staging is gone


def ship_process(host, deb: Path, *args: str) -> subprocess.Popen:
    """`debship ship` as a process of its own (to kill, or to run beside another ship)."""
    return subprocess.Popen(
        [str(DEBSHIP), "ship", str(deb), "--host", host.address, *host.ship_args(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SSH_AUTH_SOCK": ""},
    )


def test_controller_killed_mid_install(ssh_host, debs):
    converges(ssh_host, debs["v1"], "1.0.0")
    proc = ship_process(ssh_host, debs["v2"])
    try:
        wait_for(lambda: postinst_running(ssh_host, "2.0.0"), what="2.0.0's postinst")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        proc.kill()
    finally:
        proc.wait()
    # dpkg goes on by itself on the host: its output goes to a log there, not down the dead session
    wait_for(lambda: installed(ssh_host) == "ii 2.0.0", timeout=60, what="dpkg to finish on its own")
    r = run_ship([ssh_host], debs["v2"])
    assert r.exit_code == 0, r.output + r.stderr
    # the killed ship never verified 2.0.0 (its history ends in "begin"): the re-run does, then records it
    assert "finish 2.0.0: an earlier ship installed it (from 1.0.0) and was cut off before verifying it" in r.output
    assert_known_state(ssh_host, "2.0.0")


def test_host_down_mid_install_is_repaired_by_the_next_ship(ssh_host, debs):
    converges(ssh_host, debs["v1"], "1.0.0")
    t = threading.Thread(target=lambda: run_ship([ssh_host], debs["v2"]), daemon=True)
    t.start()
    wait_for(lambda: postinst_running(ssh_host, "2.0.0"), what="2.0.0's postinst")
    ssh_host.stop()  # every process of the host dies, dpkg and its postinst with them: a power cut
    t.join(timeout=120)
    assert installed(ssh_host) == "iF 2.0.0"  # dpkg really was interrupted: half-configured
    ssh_host.start()
    r = run_ship([ssh_host], debs["v2"], json_out=True)
    assert r.exit_code == 0, r.output + r.stderr
    assert '"step": "repair"' in r.output and "dpkg --configure -a" in r.output
    assert_known_state(ssh_host, "2.0.0")


def test_disk_full_refuses_before_upload_and_keeps_the_old_version(ssh_host, debs):
    converges(ssh_host, debs["v1"], "1.0.0")
    tmp = ssh_host.root.path / "var/tmp"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp)], check=True)
    try:
        ssh_host.restart()  # its mount namespace now has the small /var/tmp
        r = run_ship([ssh_host], debs["v2"])
        assert r.exit_code == 1
        assert "not enough disk space: /var/tmp (staging) has" in r.stderr and "KiB free" in r.stderr
        assert_known_state(ssh_host, "1.0.0")
    finally:
        subprocess.run(["umount", str(tmp)], check=True)
    ssh_host.restart()
    converges(ssh_host, debs["v2"], "2.0.0")


def test_a_dpkg_lock_held_for_60_s_is_waited_out(ssh_host, debs):
    with dpkg_lock_held(ssh_host, 60) as holder:
        r = run_ship([ssh_host], debs["v1"])  # the default --lock-timeout is 300 s
        assert r.exit_code == 0, r.output + r.stderr
        assert holder.poll() == 0  # apt waited the full minute
    assert_known_state(ssh_host, "1.0.0")


def test_two_ships_at_once_take_turns(ssh_host, debs):
    converges(ssh_host, debs["v1"], "1.0.0")
    first = ship_process(ssh_host, debs["v2"])  # its own process: CliRunner output is not thread-safe
    wait_for(lambda: postinst_running(ssh_host, "2.0.0"), what="the first ship's postinst")
    refused = run_ship([ssh_host], debs["v2"], "--lock-timeout", "1")
    assert refused.exit_code == 1
    assert "another ship holds this host's lock" in refused.stderr and "shipping fleet-agent 2.0.0" in refused.stderr
    second = run_ship([ssh_host], debs["v2"])  # waits for the first, then finds nothing to do
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert second.exit_code == 0, second.output + second.stderr
    assert "waiting up to 300 s for the ship lock, held by" in second.output + second.stderr
    assert "already at 2.0.0" in second.output
    assert_known_state(ssh_host, "2.0.0")
    entries = [line.split()[1:3] for line in (ssh_host.root.path / STORE / "history").read_text().splitlines()]
    assert entries.count(["begin", "2.0.0"]) == entries.count(["ship", "2.0.0"]) == 1  # one install, not two
