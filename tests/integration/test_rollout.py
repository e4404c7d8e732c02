"""Rollouts over real SSH to loopback hosts (see tests/integration/test_ship.py): batches by count
and percentage, the failure budget that halts the run, and the revert of the hosts it moved."""
from __future__ import annotations

import json

import pytest

from tests.integration.test_ship import debs, installed, run_ship, share_key  # noqa: F401  (debs: a fixture)

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
