"""`ship` over real SSH to loopback hosts: cached Debian roots, each with its own
sshd on 127.0.0.1, a user `ops` with a key and passwordless sudo (what
cloud-init would have set up).  These roots have no running systemd, so verify
checks enable links and says so."""

from __future__ import annotations

import json

import pytest

from builder.cli import ship
from tests.harness.helpers import cli_runner
from tests.harness.shipping import dpkg_lock_held, installed, run_ship, share_key

pytestmark = pytest.mark.root


def test_install_noop_upgrade_and_same_version_other_bytes(ssh_host, debs):
    r = run_ship([ssh_host], debs["v1"])
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 1.0.0"
    assert "checked enable links only" in r.output
    assert (ssh_host.root.path / "var/lib/debship/fleet-agent/fleet-agent_1.0.0_all.deb").is_file()
    assert "ship: install 1.0.0" in (ssh_host.root.path / "var/log/fleet-agent/deploy.log").read_text()
    assert list((ssh_host.root.path / "var/tmp").glob("debship.*")) == []  # staging cleaned

    r = run_ship([ssh_host], debs["v1"])
    assert r.exit_code == 0 and "already at 1.0.0" in r.output and "unchanged" in r.output

    r = run_ship([ssh_host], debs["v1-other"])
    assert r.exit_code == 1
    assert "with other contents than this package; bump the version, or pass --force" in r.output
    r = run_ship([ssh_host], debs["v1-other"], "--force")
    assert r.exit_code == 0, r.output
    conf = (ssh_host.root.path / "etc/fleet-agent/agent.conf").read_text()
    assert "other bytes, same version" in conf

    r = run_ship([ssh_host], debs["v2"])
    assert r.exit_code == 0 and "upgrade 1.0.0 -> 1.1.0" in r.output
    assert installed(ssh_host) == "ii 1.1.0"


def test_waits_for_sshd_that_starts_10s_late(make_ssh_hosts, debs):
    (host,) = make_ssh_hosts(1, start=False)
    host.start(delay=10, wait=False)
    r = run_ship([host], debs["v1"])
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(host) == "ii 1.0.0"


def test_unreachable_host_fails_clearly_while_others_succeed(make_ssh_hosts, debs):
    good, dead = make_ssh_hosts(2)
    share_key([good, dead])
    dead.stop()
    r = run_ship([good, dead], debs["v1"], "--connect-timeout", "3")
    assert r.exit_code == 1
    assert installed(good) == "ii 1.0.0"
    assert f"host ops@127.0.0.1:{dead.port}: no SSH after 3 s" in r.stderr
    assert "1 of 2 host(s) failed" in r.output


def test_changed_host_key_is_refused_and_strict_refuses_unknown(ssh_host, debs):
    r = run_ship([ssh_host], debs["v1"], "--strict-host-keys", "--dry-run")
    assert r.exit_code == 1 and "not in" in r.stderr.lower() or "unknown" in r.stderr.lower()
    assert run_ship([ssh_host], debs["v1"], "--dry-run").exit_code == 0  # accept-new saves the key
    ssh_host.rotate_host_key()
    r = run_ship([ssh_host], debs["v1"])
    assert r.exit_code == 1
    assert "host key CHANGED" in r.stderr and "ssh-keygen -R" in r.stderr
    assert installed(ssh_host) == ""


def test_a_held_dpkg_lock_is_waited_out(ssh_host, debs):
    with dpkg_lock_held(ssh_host, 20) as holder:
        r = run_ship([ssh_host], debs["v1"], "--lock-timeout", "120")
        assert r.exit_code == 0, r.output + r.stderr
        assert installed(ssh_host) == "ii 1.0.0"
        assert holder.poll() == 0  # the holder finished its 20 s: apt waited for it, it was not bypassed


def test_a_lock_held_past_the_timeout_fails_clearly(ssh_host, debs):
    with dpkg_lock_held(ssh_host, 60):
        r = run_ship([ssh_host], debs["v1"], "--lock-timeout", "3")
        assert r.exit_code == 1
        assert "dpkg is locked by another process for more than 3 s" in r.stderr
        assert "nothing was installed" in r.output  # and no second wait for the lock to remove it
        assert installed(ssh_host) == ""


def fake_cloud_init(host, code: int, text: str) -> None:
    path = host.root.path / "usr/local/bin/cloud-init"
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\nexit {code}\n")
    path.chmod(0o755)


def test_cloud_init_absent_is_fine(ssh_host, debs):
    r = run_ship([ssh_host], debs["v1"], json_out=True)
    boot = [json.loads(l) for l in r.output.splitlines() if '"boot"' in l and '"start"' not in l]
    assert boot and boot[0]["status"] == "ok" and "no cloud-init" in boot[0]["detail"]


def test_cloud_init_failed_fails_the_host_with_its_errors(ssh_host, debs):
    fake_cloud_init(ssh_host, 1, "status: error\nerrors:\n - ('scripts_user', RuntimeError('boom'))")
    r = run_ship([ssh_host], debs["v1"])
    assert r.exit_code == 1
    assert "cloud-init failed" in r.stderr and "boom" in r.stderr
    assert installed(ssh_host) == ""


def test_cloud_init_recoverable_errors_warn_and_go_on(ssh_host, debs):
    fake_cloud_init(ssh_host, 2, "status: done\nrecoverable_errors:\nWARNING:\n - bad key in user-data")
    r = run_ship([ssh_host], debs["v1"])
    assert r.exit_code == 0, r.output
    assert "WARN" in r.output and "recoverable errors" in r.output and "bad key in user-data" in r.output
    assert installed(ssh_host) == "ii 1.0.0"


def test_sudo_that_wants_a_password(make_ssh_hosts, debs):
    (host,) = make_ssh_hosts(1, sudo_password=True)
    r = run_ship([host], debs["v1"])
    assert r.exit_code == 1
    assert "sudo wants a password for user ops" in r.stderr and "NOPASSWD" in r.stderr
    assert installed(host) == ""


@pytest.mark.parametrize("n", [2, 8])
def test_hosts_in_parallel(make_ssh_hosts, debs, n):
    hosts = make_ssh_hosts(n)
    share_key(hosts)
    r = run_ship(hosts, debs["v1"], "--parallel", str(n))
    assert r.exit_code == 0, r.output + r.stderr
    assert all(installed(h) == "ii 1.0.0" for h in hosts)
    assert f"{n}/{n} host(s) at fleet-agent 1.0.0" in r.output


def test_batches_stop_at_max_failures(make_ssh_hosts, debs):
    hosts = make_ssh_hosts(4)
    share_key(hosts)
    hosts[0].stop()
    r = run_ship(hosts, debs["v1"], "--batch", "2", "--max-failures", "1", "--connect-timeout", "2", json_out=True)
    assert r.exit_code == 1
    summary = {e["host"]: e for e in map(json.loads, r.output.splitlines()) if e["step"] == "summary"}
    outcomes = [summary[f"ops@127.0.0.1:{h.port}"]["outcome"] for h in hosts]
    assert outcomes == ["failed", "reverted", "skipped", "skipped"]  # the halted run takes back its install
    assert [installed(h) for h in hosts] == ["", "rc 1.0.0", "", ""]  # removed, its conffiles kept


def test_json_events_cover_every_step(ssh_host, debs):
    r = run_ship([ssh_host], debs["v1"], json_out=True)
    assert r.exit_code == 0
    events = [json.loads(l) for l in r.output.splitlines()]
    assert all(set(e) >= {"host", "step", "status", "elapsed", "detail"} for e in events)
    finished = [e["step"] for e in events if e["status"] != "start"]
    assert finished == [
        "connect",
        "boot",
        "lock",
        "decide",
        "plan",
        "upload",
        "store",
        "simulate",
        "install",
        "verify",
        "health",
        "record",
        "summary",
    ]
    assert events[-1]["outcome"] == "installed" and events[-1]["after"] == "1.0.0"


def test_dry_run_changes_nothing(ssh_host, debs):
    before = ssh_host.root.files()
    r = run_ship([ssh_host], debs["v1"], "--dry-run")
    assert r.exit_code == 0, r.output + r.stderr
    assert "would install 1.0.0" in r.output
    after = ssh_host.root.files()
    assert sorted(after - before) == [] and sorted(before - after) == []
    assert installed(ssh_host) == ""


def test_bad_usage_is_one_line(tmp_path):
    runner = cli_runner()
    r = runner.invoke(ship, ["--project", str(tmp_path), "--host", "h"])
    assert (
        r.exit_code == 6
        and r.stderr.strip()
        == f"ship: error: {tmp_path / 'dist'}: no .deb to ship; run build-deb first or pass the .deb's path"
    )
    (tmp_path / "x.deb").write_text("not a deb")
    r = runner.invoke(ship, [str(tmp_path / "x.deb"), "--host", "h"])
    assert r.exit_code == 6 and "not a Debian package" in r.stderr
    r = runner.invoke(ship, [str(tmp_path / "x.deb")])
    assert r.exit_code == 6 and "no hosts given" in r.stderr or "not a Debian package" in r.stderr
