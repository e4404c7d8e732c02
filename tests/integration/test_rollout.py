"""Rollouts over real SSH to loopback hosts (see tests/integration/test_ship.py): batches by count
and percentage, the failure budget that halts the run, and the revert of the hosts it moved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.harness.project import REPO
from tests.harness.shipping import installed, run_ship, share_key

pytestmark = pytest.mark.root


def events(r) -> list[dict]:
    return [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]


def names(hosts) -> list[str]:
    return [f"ops@127.0.0.1:{h.port}" for h in hosts]


def batches_seen(evs: list[dict]) -> list[tuple[int, list[str], list[str]]]:
    """Per batch start event: (number, the hosts it names, the hosts with events before it ends)."""
    out, current = [], None
    for e in evs:
        if e["host"] == "" and e["step"] == "batch" and e["status"] == "start":
            current = (e["detail"]["batch"], e["detail"]["hosts"], [])
            out.append(current)
        elif e["host"] == "" and e["step"] == "batch":
            current = None
        elif e["host"] and e["step"] != "summary":
            assert current is not None, f"a host event outside any batch: {e}"
            if e["host"] not in current[2]:
                current[2].append(e["host"])
    return out


def test_batches_by_count_and_percentage_in_order(make_ssh_hosts, debs):
    hosts = make_ssh_hosts(6)
    share_key(hosts)
    r = run_ship(hosts, debs["v1"], "--batch", "1,50%,100%", "--parallel", "3", json_out=True)
    assert r.exit_code == 0, r.output + r.stderr
    seen = batches_seen(events(r))
    want = [names(hosts)[:1], names(hosts)[1:4], names(hosts)[4:]]
    assert [b[0] for b in seen] == [1, 2, 3]
    assert [b[1] for b in seen] == want
    assert [sorted(b[2]) for b in seen] == [sorted(w) for w in want]  # every host's events inside its batch
    assert [installed(h) for h in hosts] == ["ii 1.0.0"] * 6


def summary(r) -> dict[str, dict]:
    return {e["host"]: e for e in events(r) if e["step"] == "summary"}


def test_a_failure_in_the_second_batch_halts_and_reverts_every_moved_host(make_ssh_hosts, debs):
    hosts = make_ssh_hosts(6)
    share_key(hosts)
    r = run_ship(hosts, debs["v1"], "--parallel", "6")
    assert r.exit_code == 0, r.output + r.stderr
    hosts[2].stop()  # in the second batch (hosts 1-3): it cannot be reached
    r = run_ship(hosts, debs["v2"], "--batch", "1,50%,100%", "--max-fail", "1", "--connect-timeout", "2", json_out=True)
    assert r.exit_code == 1, r.output + r.stderr
    evs, ids = events(r), names(hosts)
    got = summary(r)
    assert [got[h]["outcome"] for h in ids] == ["reverted", "reverted", "failed", "reverted", "skipped", "skipped"]
    assert [got[h]["before"] for h in ids if got[h]["outcome"] == "reverted"] == ["1.0.0"] * 3
    assert [got[h]["after"] for h in ids if got[h]["outcome"] == "reverted"] == ["1.0.0"] * 3
    assert [installed(h) for h in hosts] == ["ii 1.0.0"] * 6  # every host at the version it had
    fleet = [(e["step"], e["status"]) for e in evs if e["host"] == ""]
    assert fleet == [
        ("batch", "start"),
        ("batch", "ok"),
        ("batch", "start"),
        ("batch", "fail"),
        ("halt", "fail"),
        ("revert", "start"),
        ("revert", "ok"),
    ]
    halt = next(e for e in evs if e["step"] == "halt")
    assert halt["detail"]["reason"] == "1 host(s) failed (--max-fail 1)" and halt["detail"]["batch"] == 2
    revert = next(e for e in evs if e["step"] == "revert")
    assert revert["detail"]["hosts"] == [ids[3], ids[1], ids[0]]  # the last moved first
    # the canary (batch 1) goes back only after the second batch's hosts are back
    after_revert = evs[evs.index(revert) :]
    installs = [e["host"] for e in after_revert if e["step"] == "install" and e["status"] == "ok"]
    assert sorted(installs[:2]) == sorted([ids[1], ids[3]]) and installs[2] == ids[0]
    assert not any(e["host"] in ids[4:] and e["step"] not in ("summary",) for e in evs)  # batch 3 never started
    assert "the run halted: 1 host(s) failed (--max-fail 1)" in got[ids[0]]["detail"]
    for h in (hosts[0], hosts[1], hosts[3]):  # the history says where each host is, for the next run
        history = (h.root.path / "var/lib/debship/fleet-agent/history").read_text()
        assert history.splitlines()[-1].split()[1:3] == ["rollback", "1.0.0"], history


def test_no_rollback_leaves_the_moved_hosts_on_the_new_version(make_ssh_hosts, debs):
    hosts = make_ssh_hosts(3)
    share_key(hosts)
    assert run_ship(hosts, debs["v1"]).exit_code == 0
    hosts[1].stop()
    r = run_ship(
        hosts, debs["v2"], "--batch", "1", "--max-fail", "1", "--connect-timeout", "2", "--no-rollback", json_out=True
    )
    assert r.exit_code == 1
    got = summary(r)
    assert [got[h]["outcome"] for h in names(hosts)] == ["installed", "failed", "skipped"]
    assert [installed(h) for h in hosts] == ["ii 1.1.0", "ii 1.0.0", "ii 1.0.0"]


def test_sigterm_halts_the_run_and_reverts_the_hosts_it_moved(make_ssh_hosts, debs):
    """debship as a real process: SIGTERM once the second batch starts; that batch's host finishes,
    the run halts, both moved hosts go back, the third is never touched."""
    hosts = make_ssh_hosts(3)
    share_key(hosts)
    assert run_ship(hosts, debs["v1"]).exit_code == 0
    argv = [sys.executable, "-c", "from builder.cli import main; main()", "ship", str(debs["v2"])]
    for h in hosts:
        argv += ["--host", h.address]
    argv += [*hosts[0].ship_args(), "--batch", "1", "--json"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "SSH_AUTH_SOCK": ""},
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            e = json.loads(line)
            if e["step"] == "batch" and e["status"] == "start" and e["detail"]["batch"] == 2:
                proc.send_signal(signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    evs = [json.loads(l) for l in lines + out.splitlines(keepends=True) if l.startswith("{")]
    got = {e["host"]: e for e in evs if e["step"] == "summary"}
    ids = names(hosts)
    assert proc.returncode == 1, err
    assert [got[h]["outcome"] for h in ids] == ["reverted", "reverted", "skipped"], got
    assert [got[h]["after"] for h in ids[:2]] == ["1.0.0", "1.0.0"]
    assert next(e for e in evs if e["step"] == "halt")["detail"]["signal"] == "SIGTERM"
    assert [installed(h) for h in hosts] == ["ii 1.0.0"] * 3


def test_soak_holds_each_batch_before_the_next(make_ssh_hosts, debs):
    """No systemd on these hosts: nothing to watch, but the next batch still waits out the soak."""
    hosts = make_ssh_hosts(2)
    share_key(hosts)
    r = run_ship(hosts, debs["v1"], "--batch", "1", "--soak", "2s", json_out=True)
    assert r.exit_code == 0, r.output + r.stderr
    evs, ids = events(r), names(hosts)
    fleet = [(e["step"], e["status"], e["detail"].get("hosts")) for e in evs if e["host"] == ""]
    assert fleet == [
        ("batch", "start", ids[:1]),
        ("soak", "start", ids[:1]),
        ("soak", "ok", ids[:1]),
        ("batch", "ok", ids[:1]),
        ("batch", "start", ids[1:]),
        ("soak", "start", ids[1:]),
        ("soak", "ok", ids[1:]),
        ("batch", "ok", ids[1:]),
    ]
    soaks = [e for e in evs if e["step"] == "soak" and e["host"] and e["status"] != "start"]
    assert [(e["host"], e["status"]) for e in soaks] == [(ids[0], "warn"), (ids[1], "warn")]
    assert "nothing to watch; waited 2 s" in soaks[0]["detail"]
    start = next(e for e in evs if e["host"] == ids[1])
    assert start["step"] == "connect"  # the second batch starts only after the first one's soak
    assert evs.index(start) > evs.index(soaks[0])


def ship_and_kill_after_install(host, deb) -> None:
    """debship as a real process, SIGKILLed as soon as it reports the install done."""
    argv = [
        sys.executable,
        "-c",
        "from builder.cli import main; main()",
        "ship",
        str(deb),
        "--host",
        host.address,
        *host.ship_args(),
        "--json",
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, "SSH_AUTH_SOCK": ""},
    )
    try:
        for line in proc.stdout:
            e = json.loads(line)
            if e["step"] == "install" and e["status"] == "ok":
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_a_run_killed_after_install_is_verified_by_the_plain_rerun(ssh_host, debs):
    """kill -9 between install and record: the host is on a version dpkg names, the history's
    "begin" line says it was never verified, and the same command run again verifies and records it."""
    history = ssh_host.root.path / "var/lib/debship/fleet-agent/history"
    for _ in range(3):  # the kill races the two quick steps after install; retry until it lands first
        assert run_ship([ssh_host], debs["v1"]).exit_code == 0
        ship_and_kill_after_install(ssh_host, debs["v2"])
        if history.read_text().splitlines()[-1].split()[1:] == ["begin", "1.1.0", "from", "1.0.0"]:
            break
    else:
        pytest.fail(f"the kill never landed between install and record:\n{history.read_text()}")
    assert installed(ssh_host) == "ii 1.1.0"  # dpkg finished by itself: a nameable version
    r = run_ship([ssh_host], debs["v2"], json_out=True)
    assert r.exit_code == 0, r.output + r.stderr
    steps = [e["step"] for e in events(r) if e["status"] not in ("start",) and e["step"] != "summary"]
    assert steps[-3:] == ["verify", "health", "record"] and "install" not in steps
    got = summary(r)[ssh_host.address]
    assert got["outcome"] == "installed" and got["before"] == "1.0.0" and got["after"] == "1.1.0"
    assert "cut off before verifying it" in got["detail"]
    assert history.read_text().splitlines()[-1].split()[1:3] == ["ship", "1.1.0"]
    assert run_ship([ssh_host], debs["v2"]).exit_code == 0  # and then it is simply there


def test_text_output_of_a_halted_run(make_ssh_hosts, debs):
    hosts = make_ssh_hosts(2)
    share_key(hosts)
    assert run_ship(hosts, debs["v1"]).exit_code == 0
    hosts[1].stop()
    r = run_ship(hosts, debs["v2"], "--batch", "1", "--max-fail", "1", "--connect-timeout", "2")
    assert r.exit_code == 1, r.output + r.stderr  # a host failed (unreachable) and was not rolled back
    assert "== halt     FAIL" in r.stderr and "halting the run: 1 host(s) failed (--max-fail 1)" in r.stderr
    assert f"reverting 1 host(s) this run moved: {hosts[0].address}" in r.output
    row = next(l for l in r.output.splitlines() if l.startswith(hosts[0].address) and "reverted" in l)
    assert row.split()[1:4] == ["1.0.0", "1.0.0", "reverted"]  # before, after (its final version), outcome
    assert r.output.rstrip().endswith(
        "1 of 2 host(s) failed or skipped; the run halted and 1 host(s) it moved went back"
    )
