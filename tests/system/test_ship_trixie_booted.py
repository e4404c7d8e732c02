"""`ship` to a booted Debian 13 (trixie) host: systemd 257 as PID 1 in a systemd-nspawn container
of a cached trixie root (hostlab/nspawn.py), apt 3.0, python 3.13, merged /usr.  One container for
the whole module (one boot, ~5 s); the tests run in order on it: install (services really start,
the health command answers), upgrade (the agent restarts into the new version), `--rollback` (the
old version runs again and debship's pin holds it through the host's own `apt-get upgrade`),
purge (units stopped and gone from systemd, nothing of the package left).  The bookworm container
gets the same from test_ship_systemd.py and tests/integration/test_pin.py; the loopback trixie
host from tests/integration/test_ship_trixie.py."""

from __future__ import annotations

import pytest

from builder.layout import Layout
from tests.harness.booted import AGENT, STARTUP, finished, health_body, healthz, journal, last, run_ship, shown, unit
from tests.harness.hoststate import assert_active, assert_known_state, leftovers, purge

pytestmark = [pytest.mark.root, pytest.mark.parametrize("suite_booted_host", ["trixie"], indirect=True)]
LAYOUT = Layout("fleet-agent")
# What a running guest changes by itself (its journal, systemd's and dbus's own state), not the package.
GUEST_OWN = ("var/log/journal/", "var/lib/systemd/timers/", "var/lib/systemd/random-seed", "var/lib/dbus/")


@pytest.fixture(scope="module")
def clean_files(suite_booted_host):
    """Every path of the guest before debship touched it (taken at the module's first test)."""
    return suite_booted_host.root.files()


def pinned_at(host) -> str | None:
    r = host.run_root(["cat", LAYOUT.apt_pin], check=False)
    lines = r.stdout.splitlines() if r.returncode == 0 else []
    return next((line.split()[-1] for line in lines if line.startswith("Pin: version")), None)


def test_it_boots_debian_13_with_systemd_257(suite_booted_host, clean_files):
    host = suite_booted_host
    assert host.run_root(["cat", "/etc/debian_version"]).stdout.startswith("13.")
    assert host.run_root(["systemctl", "--version"]).stdout.startswith("systemd 257")
    state = host.run_root(["systemctl", "is-system-running", "--wait"], check=False).stdout.strip()
    failed = host.run_root(["systemctl", "--failed", "--no-legend"], check=False).stdout
    assert state == "running", failed


def test_install_starts_the_services(suite_booted_host, sample):
    host = suite_booted_host
    r = run_ship(host, sample["v1"], json_out=True)
    assert r.exit_code == 0, shown(r)
    events = finished(r)
    assert f"active: {AGENT}" in last(events, "verify")["detail"]
    assert health_body(last(events, "health"))["version"] == "1.0.0"
    assert assert_known_state(host, "fleet-agent") == "1.0.0" and pinned_at(host) == "1.0.0"
    assert_active(host, AGENT)
    body = healthz(host, sample["port"])
    assert body["version"] == "1.0.0" and body["pid"] == int(unit(host, AGENT)["MainPID"])
    assert unit(host, STARTUP)["ActiveState"] == "inactive"  # start = false: it runs at boot only
    path = host.run_root(["systemctl", "show", "-p", "FragmentPath", "--value", AGENT]).stdout.strip()
    assert path == f"/usr/lib/systemd/system/{AGENT}"


def test_upgrade_restarts_the_agent_into_the_new_version(suite_booted_host, sample):
    host = suite_booted_host
    old_pid = unit(host, AGENT)["MainPID"]
    r = run_ship(host, sample["v2"], json_out=True)
    assert r.exit_code == 0, shown(r)
    assert "upgrade 1.0.0 -> 1.1.0" in last(finished(r), "install")["detail"]
    assert assert_known_state(host, "fleet-agent") == "1.1.0" and pinned_at(host) == "1.1.0"
    props = unit(host, AGENT)
    assert props["MainPID"] not in ("0", old_pid) and props["NRestarts"] == "0", props
    assert healthz(host, sample["port"])["version"] == "1.1.0"


def test_rollback_runs_the_old_version_and_apt_get_upgrade_keeps_it(suite_booted_host, sample):
    host = suite_booted_host
    r = run_ship(host, sample["v2"], "--rollback")
    assert r.exit_code == 0, shown(r)
    assert "rolled back 1.1.0 -> 1.0.0" in r.output
    assert assert_known_state(host, "fleet-agent") == "1.0.0" and pinned_at(host) == "1.0.0"
    assert healthz(host, sample["port"])["version"] == "1.0.0", journal(host)
    policy = host.run_root(["apt-cache", "policy", "fleet-agent"]).stdout
    assert "Candidate: 1.0.0" in policy and "1.1.0" in policy, policy  # the store lists 1.1.0: the pin holds
    for verb in ("upgrade", "dist-upgrade"):
        # only the store's file: source; the guest shares the host's network, Debian's mirrors stay out of it
        argv = ["apt-get", verb, "-y", "-q", "-o", "Dir::Etc::sourcelist=/dev/null"]
        up = host.run_root(["env", "DEBIAN_FRONTEND=noninteractive", *argv], check=False)
        assert up.returncode == 0, up.stdout + up.stderr
    assert assert_known_state(host, "fleet-agent") == "1.0.0"
    assert_active(host, AGENT)


def test_purge_stops_the_units_and_leaves_nothing(suite_booted_host, clean_files):
    host = suite_booted_host
    output = purge(host)
    assert "not empty so not removed" not in output, output
    assert host.run_root(["dpkg-query", "-W", "fleet-agent"], check=False).returncode != 0
    listed = host.run_root(["systemctl", "list-unit-files", "--no-legend", "fleet-agent*"], check=False).stdout
    assert listed.strip() == "", listed
    for name in (AGENT, STARTUP):
        props = unit(host, name)
        assert props["ActiveState"] == "inactive", (name, props)
    assert pinned_at(host) is None
    assert leftovers(host, clean_files, skip=GUEST_OWN) == ([], [])
