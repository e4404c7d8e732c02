"""The local connector, for real: subprocesses, files and a held flock on this machine (no mocks).

``LocalConnection`` implements the same ``Connection`` protocol as the SSH connector, so the
executor runs a host job through it unchanged (what ``debship apply`` will do)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder.errors import RemoteError
from builder.ship import commands, fleet
from builder.ship.connection import Result
from builder.ship.local import LocalConnection, LocalHeld
from builder.ship.local import connect as local_connect
from builder.ship.options import ShipOptions
from builder.ship.sshconfig import HostSpec


def test_run_returns_output_exit_code_and_feeds_stdin():
    conn = LocalConnection()
    r = conn.run(["sh", "-c", 'cat; echo "to err $X" >&2; exit 4'], stdin=b"fed\n", env={"X": "y"})
    assert isinstance(r, Result)
    assert (r.exit_code, r.stdout, r.stderr, r.ok) == (4, "fed\n", "to err y\n", False)
    assert conn.run(["true"]).ok


def test_run_past_its_timeout_or_without_the_program_is_a_remote_error():
    conn = LocalConnection("here")
    with pytest.raises(RemoteError, match=r"host here: .*still running after 0.2 s"):
        conn.run(["sleep", "5"], timeout=0.2)
    with pytest.raises(RemoteError, match="cannot run no-such-program-debship"):
        conn.run(["no-such-program-debship"])


def test_put_copies_then_renames_and_leaves_nothing_half_written(tmp_path):
    conn = LocalConnection()
    src = tmp_path / "a.deb"
    src.write_bytes(b"x" * 100_000)
    seen = []
    conn.put(src, str(tmp_path / "b.deb"), progress=lambda sent, total: seen.append((sent, total)))
    assert (tmp_path / "b.deb").read_bytes() == src.read_bytes()
    assert seen == [(100_000, 100_000)]
    with pytest.raises(RemoteError, match="no such local file"):
        conn.put(tmp_path / "missing.deb", str(tmp_path / "c.deb"))
    with pytest.raises(RemoteError, match="exists and"):
        conn.put(src, str(tmp_path / "no-such-dir" / "c.deb"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.deb", "b.deb"]


def test_hold_keeps_the_ship_lock_until_close(tmp_path):
    """The host lock script of ``commands``, as ``actions.take_lock`` runs it: a second taker sees
    BUSY with the holder's name and times out (exit 75); after close() the lock is free."""
    lock, info = str(tmp_path / "lock" / "ship.lock"), str(tmp_path / "lock" / "holder")
    where = (str(tmp_path / "store" / "pkg"), str(tmp_path / "log"))  # the store and log folders it checks
    first = LocalConnection()
    held = first.hold(commands.host_lock(lock, info, "first ship", 30, *where), until=commands.LOCKED, timeout=30)
    assert isinstance(held, LocalHeld)

    lines: list[str] = []
    second = LocalConnection()
    got = second.hold(
        commands.host_lock(lock, info, "second ship", 1, *where),
        until=commands.LOCKED,
        timeout=30,
        on_line=lines.append,
    )
    assert isinstance(got, Result) and got.exit_code == commands.LOCK_TIMED_OUT
    assert lines == [f"BUSY first ship (lock file {lock}, owned by root)"]

    first.close()  # ends the held child: the lock is released
    third = second.hold(commands.host_lock(lock, info, "third ship", 5, *where), until=commands.LOCKED, timeout=30)
    assert isinstance(third, LocalHeld)
    second.close()
    assert open(info).read() == "third ship\n"


def test_hold_that_never_answers_is_a_remote_error():
    with pytest.raises(RemoteError, match="did not answer within 0.3 s"):
        LocalConnection().hold(["sleep", "5"], until="never", timeout=0.3)


def test_the_executor_runs_a_host_job_through_the_local_connector():
    """``--list`` on this machine through ``LocalConnection``: the executor and the actions need
    no SSH (read-only: the facts script only reads dpkg's database and debship's store)."""
    events = []
    results = fleet.list_kept(
        "debship-i20-not-installed", [HostSpec("localhost")], ShipOptions(), events.append, connector=local_connect
    )
    assert [(r.host, r.outcome, r.before, r.detail) for r in results] == [("localhost", "listed", None, "kept: none")]
    assert [(e.step, e.status) for e in events] == [("connect", "start"), ("connect", "ok")]
    assert events[1].detail == f"as {LocalConnection().user}"


def test_the_executor_and_the_actions_need_no_ssh():
    """They type against the ``Connection`` protocol: importing them (and the local connector)
    loads neither the SSH connector nor paramiko."""
    code = (
        "import sys, builder.ship.fleet, builder.ship.executor, builder.ship.actions, builder.ship.local; "
        "print(sorted(m for m in ('paramiko', 'builder.ship.ssh', 'builder.ship.hostkeys') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout == "[]\n"
