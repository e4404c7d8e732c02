"""Shipping to booted hosts (systemd-nspawn, tests/harness/fixtures_nspawn.py): the sample
with its agent on a free port, running `ship` through click, and asking the host about units."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.cli import ship
from hostlab.sshhost import free_port
from tests.harness.helpers import cli_runner
from tests.harness.project import copy_sample

AGENT = "fleet-agent.service"
STARTUP = "fleet-agent-startup.service"

CRASHING_AGENT = '''\
#!/usr/bin/python3
"""A fleet-agent that exits 1 at once: with Restart=on-failure its unit crash-loops."""
import sys
print("fleet-agent: crashing on purpose (system test)", file=sys.stderr)
sys.exit(1)
'''


def sample_project(dest: Path) -> tuple[Path, int]:
    """A copy of the sample with its agent on a free loopback port: (project, port)."""
    project = copy_sample(dest)
    port = free_port()
    conf = project / "configs" / "agent.conf"
    text, n = re.subn(r"(?m)^port = \d+$", f"port = {port}", conf.read_text())
    assert n == 1, "configs/agent.conf has no 'port = N' line any more"
    conf.write_text(text)
    return project, port


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample's v1 1.0.0 and v2 1.1.0, and a 1.2.0 whose agent crashes, with the agent on a free port."""
    base = tmp_path_factory.mktemp("systemd-debs")
    project, port = sample_project(base / "project")
    debs = {
        "v1": build_deb(project, base / "v1", version="1.0.0").path,
        "v2": build_deb(project, base / "v2", version="1.1.0").path,
    }
    (project / "scripts" / "agent.py").write_text(CRASHING_AGENT)
    debs["crash"] = build_deb(project, base / "crash", version="1.2.0").path
    return {"port": port, **debs}


def run_ship(host, deb: Path, *args: str, json_out: bool = False):
    argv = [str(deb), "--host", host.address, *host.ship_args(), "--connect-timeout", "30", *args]
    if json_out:
        argv.append("--json")
    runner = cli_runner()
    t0 = time.monotonic()
    r = runner.invoke(ship, argv, env={"SSH_AUTH_SOCK": ""})
    r.seconds = time.monotonic() - t0
    return r


def finished(r) -> list[dict]:
    """The --json events that end a step (no "start" events), in order."""
    events = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    return [e for e in events if e["status"] != "start" and e["step"] != "summary"]


def last(events: list[dict], step: str) -> dict:
    found = [e for e in events if e["step"] == step]
    assert found, f"no {step!r} event in {[e['step'] for e in events]}"
    return found[-1]


def shown(r) -> str:
    return f"exit {r.exit_code} after {r.seconds:.1f}s\nstdout:\n{r.output}\nstderr:\n{r.stderr}"


def unit(host, name: str) -> dict:
    """Properties of a unit, asked over SSH as ops (as ship asks)."""
    with host.connect() as conn:
        r = conn.run(["systemctl", "show", "-p", "ActiveState,SubState,MainPID,NRestarts,ExecMainStatus", "--", name])
    assert r.exit_code == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def healthz(host, port: int) -> dict:
    """GET /healthz with curl inside the guest."""
    r = host.run_root(["curl", "-sS", "--fail", "--max-time", "5", f"http://127.0.0.1:{port}/healthz"], check=False)
    assert r.returncode == 0, f"curl failed: {r.stderr}\n{journal(host)}"
    return json.loads(r.stdout)


def journal(host, name: str = AGENT) -> str:
    return host.run_root(["journalctl", "--no-pager", "-n", "30", "-u", name], check=False).stdout


def health_body(event: dict) -> dict:
    """The agent's /healthz body as the health command printed it (the event's detail)."""
    assert event["status"] == "ok", event
    return json.loads(event["detail"])
