"""A phased rollout pulled by booted hosts (systemd-nspawn, systemd as PID 1, 8 containers with
distinct machine ids): ``debship apply --follow`` takes a version phased at 25 % on exactly the
machines whose bucket says so (computed apart from apt, ``tests/harness/phasing.py``), the same
ones on a second run, every machine at 100 %; a bad version (its health check fails) published at
50 % is pulled through the timer's own service, ``debship-follow@NAME.service``, and the machines
that took it roll back by themselves, keep their service running, and refuse it; halted at 0 %,
no machine takes it.  The containers share the machine's network, so the package's service binds
no port."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.cloudinit import FOLLOW_SERVICE, FOLLOW_TIMER
from builder.repo import publish
from tests.harness.applying import install_debship
from tests.harness.aptrepo import export_key
from tests.harness.helpers import _missing, cli_runner
from tests.harness.phasing import machine_id, takes
from tests.harness.project import write_project

pytestmark = pytest.mark.root
NAME = "phased-svc"


def project_files(healthy: bool) -> dict:
    check = "print('ok')" if healthy else "import sys\nprint('phased-svc: broken on purpose')\nsys.exit(1)"
    return {
        "debship.toml": f"""
            name = "{NAME}"
            version = "1.0.0"
            maintainer = "Demo Team <demo@example.com>"
            description = "a service that binds nothing, for phased pulls"
            depends = ["python3"]
            startup = false
            health = "/usr/bin/python3 /usr/lib/{NAME}/check.py"
        """,
        f"units/{NAME}.service": """
            [Unit]
            Description=phased-svc

            [Service]
            ExecStart=/bin/sleep infinity

            [Install]
            WantedBy=multi-user.target
        """,
        "scripts/check.py": f"#!/usr/bin/python3\n{check}\n",
    }


@pytest.fixture(scope="module")
def phased_debs(tmp_path_factory):
    base = tmp_path_factory.mktemp("phased-debs")
    good = write_project(base / "good", project_files(True))
    bad = write_project(base / "bad", project_files(False))
    return {
        "1.0.0": build_deb(good, base / "1", version="1.0.0").path,
        "2.0.0": build_deb(good, base / "2", version="2.0.0").path,
        "3.0.0": build_deb(bad, base / "3", version="3.0.0").path,
    }


def version(host) -> str | None:
    r = host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", NAME], check=False)
    return r.stdout[3:] if r.stdout.startswith("ii") else None


def phase(server, *how, key):
    r = cli_runner().invoke(main, ["phase", str(server.repo), NAME, *how, "--sign-key", key])
    assert r.exit_code == 0, r.output + r.stderr


def test_booted_hosts_pull_a_phased_rollout_and_roll_back_a_bad_version(make_booted_hosts, phased_debs, keys, server):
    if sys.version_info[:2] != (3, 11):
        _missing("a Python 3.11 venv (its compiled libraries are copied into the Debian 12 hosts)")
    hosts = make_booted_hosts(8, start=False)
    mids = {}
    for i, h in enumerate(hosts):
        mids[h] = machine_id(i, "booted-2")
        (h.root.path / "etc/machine-id").write_text(mids[h] + "\n")  # before the first boot, as an image's
        install_debship(h)
        export_key(keys.main, h.root.path / "root/archive.gpg")
        units = h.root.path / "etc/systemd/system"
        (units / "debship-follow@.service").write_text(FOLLOW_SERVICE)
        (units / "debship-follow@.timer").write_text(FOLLOW_TIMER)
    for h in hosts:
        h.start()
    pool = ThreadPoolExecutor(4)

    def on_all(fn):
        return dict(zip(hosts, pool.map(fn, hosts)))

    def follow(h, *extra):
        return h.run_root(["debship", "apply", "--follow", NAME, *extra], check=False, timeout=300)

    publish([phased_debs["1.0.0"]], server.repo, sign_key=keys.main)
    first = ["--repo", server.url, "--repo-key", "/root/archive.gpg"]
    for h, p in on_all(lambda h: follow(h, *first)).items():
        assert p.returncode == 0 and version(h) == "1.0.0", p.stdout + p.stderr
        assert h.run_root(["cat", "/etc/machine-id"]).stdout.strip() == mids[h]

    publish([phased_debs["2.0.0"]], server.repo, sign_key=keys.main, phase=25)
    expected = {h for h in hosts if takes(NAME, "2.0.0", mids[h], 25)}
    assert 0 < len(expected) < len(hosts), "the fixed machine ids must split at 25 %"
    for _ in range(2):
        for p in on_all(follow).values():
            assert p.returncode == 0, p.stdout + p.stderr
        assert {h for h in hosts if version(h) == "2.0.0"} == expected

    phase(server, "2.0.0", "--percent", "100", key=keys.main)
    for h, p in on_all(follow).items():
        assert p.returncode == 0 and version(h) == "2.0.0", p.stdout + p.stderr

    publish([phased_debs["3.0.0"]], server.repo, sign_key=keys.main, phase=50)
    bad = {h for h in hosts if takes(NAME, "3.0.0", mids[h], 50)}
    assert bad, "some machine must be in the 50 % bucket"
    # pulled by the timer's own service, as the timer would start it
    unit = f"debship-follow@{NAME}.service"
    started = on_all(lambda h: h.run_root(["systemctl", "start", unit], check=False, timeout=300))
    for h, p in started.items():
        result = h.run_root(["systemctl", "show", "-p", "Result", "--value", unit]).stdout.strip()
        journal = h.run_root(["journalctl", "-u", unit, "--no-pager", "-o", "cat"], check=False).stdout
        if h in bad:
            assert p.returncode != 0 and result == "exit-code", journal
            assert "rolled back to 2.0.0" in journal, journal
            refused = h.run_root(["cat", f"/etc/apt/preferences.d/debship-{NAME}-refused.pref"]).stdout
            assert "Pin: version 3.0.0\nPin-Priority: -1" in refused
        else:
            assert p.returncode == 0 and result == "success", journal
        assert version(h) == "2.0.0"
        assert h.run_root(["systemctl", "is-active", f"{NAME}.service"], check=False).stdout.strip() == "active"

    phase(server, "3.0.0", "--halt", key=keys.main)
    for h, p in on_all(follow).items():
        assert p.returncode == 0 and version(h) == "2.0.0", p.stdout + p.stderr

    # debship status tells a following host from a pinned one, and names the versions it refuses
    for h in (next(iter(bad)), next(h for h in hosts if h not in bad)):
        argv = ["status", "--host", h.address, *h.ship_args(), "--package", NAME, "--json"]
        r = cli_runner().invoke(main, argv, env={"SSH_AUTH_SOCK": ""})
        assert r.exit_code == 0, r.output + r.stderr
        row = json.loads(r.output)
        assert (row["installed"], row["held"], row["follows"]) == ("2.0.0", None, server.url), row
        assert row["refused"] == (["3.0.0"] if h in bad else []), row

    timer = f"debship-follow@{NAME}.timer"
    for h in hosts[:1]:
        assert h.run_root(["systemctl", "enable", "--now", timer], check=False).returncode == 0
        assert h.run_root(["systemctl", "is-active", timer]).stdout.strip() == "active"
        # purge removes the source: the timer's next run is skipped by its condition, not failed
        assert h.run_root(["apt-get", "purge", "-y", NAME], check=False, timeout=300).returncode == 0
        h.run_root(["systemctl", "start", unit], check=False, timeout=120)
        shown = h.run_root(["systemctl", "show", "-p", "ConditionResult,Result", unit]).stdout.split()
        assert sorted(shown) == ["ConditionResult=no", "Result=success"], shown
    pool.shutdown()
