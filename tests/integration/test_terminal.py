"""`ship` on a real pseudo-terminal (os.openpty) to loopback hosts: an upload progress bar
for one host, one live line of counts for many, and --json unchanged on a terminal too.
(Plain output to a pipe or a file is what every other ship test reads, unchanged.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builder.build import build_deb
from tests.harness.project import copy_sample
from tests.harness.shipping import share_key

pytestmark = pytest.mark.root

DEBSHIP = Path(sys.executable).with_name("debship")


@pytest.fixture(scope="module")
def big_deb(tmp_path_factory):
    """The sample with 24 MiB of incompressible data, stored uncompressed: an upload that takes a while."""
    base = tmp_path_factory.mktemp("terminal-debs")
    project = copy_sample(base / "project")
    (project / "scripts" / "payload.bin").write_bytes(os.urandom(24 << 20))
    return build_deb(project, base / "out", version="1.0.0", compression="none").path


def on_pty(argv: list[str]) -> str:
    """Run ``argv`` with stdout and stderr on a new pseudo-terminal; everything it wrote there."""
    master, slave = os.openpty()
    env = {**os.environ, "SSH_AUTH_SOCK": "", "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def ship_argv(hosts, deb, *extra) -> list[str]:
    argv = [str(DEBSHIP), "ship", str(deb)]
    for h in hosts:
        argv += ["--host", h.address]
    return [*argv, *hosts[0].ship_args(), "--connect-timeout", "30", *extra]


def test_one_host_shows_the_upload_with_bytes_rate_and_time_left(ssh_host, big_deb):
    out = on_pty(ship_argv([ssh_host], big_deb))
    # the rate and time left show once 0.2 s have passed (a quiet machine may upload faster) and at the end
    bars = re.findall(
        r"\[[^\]]+\] upload +\[[#-]*\] +\d+% +([\d.]+)/([\d.]+) MiB(?:, ([\d.]+) MiB/s, (\d+:\d\d:\d\d) left)?", out
    )
    assert len(bars) >= 2, out  # redrawn as the bytes go
    assert bars[-1][2] and bars[-1][3] == "0:00:00", out
    assert bars[-1][0] == bars[-1][1] == f"{big_deb.stat().st_size / (1 << 20):.1f}"
    assert float(bars[0][0]) < float(bars[-1][0])
    assert "100%" in out and f"[{ssh_host.address}] install" in out  # step lines as before
    assert "1/1 host(s) at fleet-agent 1.0.0" in out


def test_many_hosts_show_one_line_of_counts_then_the_summary(make_ssh_hosts, big_deb):
    hosts = make_ssh_hosts(3)
    share_key(hosts)
    out = on_pty(ship_argv(hosts, big_deb, "--parallel", "2"))
    counts = re.findall(r"\r\x1b\[K(\d+)/3 done, (\d+) running, (\d+) failed", out)
    assert counts and counts[-1] == ("3", "0", "0"), out
    assert ("0", "2", "0") in counts or ("0", "1", "0") in counts  # seen while running, at most 2 at once
    assert all(int(running) <= 2 for _, running, _ in counts)
    assert "] connect" not in out and "] install" not in out and not re.search(r"upload +\[", out)  # no steps, no bar
    summary = out[out.rindex("3/3 done, 0 running, 0 failed") :].splitlines()
    assert summary[2].split()[:4] == ["host", "before", "after", "outcome"]
    assert summary[-1] == "3/3 host(s) at fleet-agent 1.0.0"


def test_json_on_a_terminal_is_unchanged(ssh_host, big_deb):
    out = on_pty(ship_argv([ssh_host], big_deb, "--json"))
    lines = out.strip().split("\n")
    assert "\r" not in out and "\x1b" not in out
    events = [json.loads(line) for line in lines]
    assert events[-1]["step"] == "summary" and events[-1]["outcome"] == "installed"
