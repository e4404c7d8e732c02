"""First boot with checks: a booted container (systemd as PID 1, cloud-init with a NoCloud seed)
whose user-data is what ``debship cloud-init --apply`` prints.  Its only archive is the signed
repository served on 127.0.0.1, which holds what a real instance's archives would: the package,
python3-debship as ``make deb-self`` builds it, and the Debian packages python3-debship needs that
the image lacks (python3-click, python3-paramiko, python3-debian and theirs; downloaded from Debian
once and cached, tests/harness/selfdeb.py).  cloud-init's package module installs python3-debship,
runcmd runs ``debship apply NAME=VERSION --repo …``: lock, plan, install, verify, health, record, pin.

A version whose health check fails: apply removes it again (the instance had no earlier version,
so its automatic rollback is a removal), exits 3, and cloud-init ends in ``error``.

Then Ansible's module (ansible/) upgrades such an instance through that python3-debship, its
diff showing the units as systemd runs them before and after."""

from __future__ import annotations

import json
import re

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.layout import Layout
from builder.repo import publish
from tests.harness.ansibleplay import recap, run_playbook
from tests.harness.aptrepo import export_key
from tests.harness.booted import AGENT, STARTUP, healthz, journal, sample_project
from tests.harness.helpers import cli_runner
from tests.harness.selfdeb import build_self_deb, deps_for

pytestmark = pytest.mark.root
LAY = Layout("fleet-agent")
BAD_HEALTH = "0.0.0-never"  # the bad version's health check expects a version the agent never reports


@pytest.fixture(scope="module")
def first_boot_debs(tmp_path_factory):
    """fleet-agent 1.0.0, a 1.3.0 whose agent runs but whose health check fails, python3-debship and
    the Debian packages it needs on the cloud image (a list of paths under "debship")."""
    from hostlab.nspawn import CLOUD_PACKAGES
    from hostlab.rootfs import cached_root
    from tests.harness.fixtures_nspawn import require_nspawn_host

    require_nspawn_host()
    base = tmp_path_factory.mktemp("first-boot-debs")
    project, port = sample_project(base / "project")
    good = build_deb(project, base / "good", version="1.0.0").path
    newer = build_deb(project, base / "newer", version="1.1.0").path
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '--expect-version \\"$DEBSHIP_VERSION\\""' in text, "the sample's health line moved"
    pyproject.write_text(text.replace('\\"$DEBSHIP_VERSION\\""', f'{BAD_HEALTH}"'))
    bad = build_deb(project, base / "bad", version="1.3.0").path
    self_deb = build_self_deb(base / "self")
    return {
        "port": port,
        "good": good,
        "newer": newer,
        "bad": bad,
        "debship": [self_deb, *deps_for(self_deb, cached_root(CLOUD_PACKAGES))],
    }


def first_boot(make_booted_hosts, server, keys, tmp_path, debs, spec: str, *args: str, mode: str = "--apply"):
    """Publish everything (with --follow: the good version only), boot one instance with
    ``cloud-init MODE --package spec``, wait for cloud-init."""
    versions = ["good"] if mode == "--follow" else ["good", "newer", "bad"]
    publish([*(debs[v] for v in versions), *debs["debship"]], server.repo, sign_key=keys.main)
    key = export_key(keys.main, tmp_path / "archive.gpg")
    r = cli_runner().invoke(
        main, ["cloud-init", mode, "--repo", server.url, "--repo-key", str(key), "--package", spec, *args]
    )
    assert r.exit_code == 0, r.stderr
    (host,) = make_booted_hosts(1, cloud=True, user_data=r.stdout, boot_timeout=120)
    done = host.run_root(["timeout", "600", "cloud-init", "status", "--wait", "--long"], check=False, timeout=660)
    output = host.run_root(["sh", "-c", "tail -n 60 /var/log/cloud-init-output.log"], check=False).stdout
    return host, done, f"{done.stdout}{done.stderr}\n--- cloud-init-output.log:\n{output}"


def dpkg(host, name: str) -> str:
    return host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", name], check=False).stdout.strip()


def history(host) -> list[str]:
    """The store's history, less each line's timestamp."""
    r = host.run_root(["cat", LAY.history], check=False)
    return [line.split(None, 1)[1] for line in r.stdout.splitlines()]


def test_first_boot_applies_the_package_with_its_checks(make_booted_hosts, server, keys, tmp_path, first_boot_debs):
    host, done, shown = first_boot(make_booted_hosts, server, keys, tmp_path, first_boot_debs, "fleet-agent=1.0.0")
    assert done.returncode == 0 and "status: done" in done.stdout, shown
    # python3-debship and its dependencies came from the repository, the package through apply
    assert dpkg(host, "python3-debship").startswith("ii "), shown
    assert dpkg(host, "python3-paramiko").startswith("ii "), shown
    assert dpkg(host, "fleet-agent") == "ii 1.0.0", shown
    assert "[localhost] health   ok" in shown and "1/1 host(s) at fleet-agent 1.0.0" in shown, shown
    for unit in (AGENT, STARTUP):
        out = host.run_root(["systemctl", "show", "-p", "ActiveState,Result", unit]).stdout
        state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        want = "active" if unit == AGENT else "inactive"  # the startup oneshot ran at install and exited
        assert state == {"ActiveState": want, "Result": "success"}, (unit, state, journal(host, unit))
    assert healthz(host, first_boot_debs["port"])["version"] == "1.0.0"
    # debship's pin holds 1.0.0 although the repository has 1.3.0
    assert "Pin: version 1.0.0" in host.run_root(["cat", LAY.apt_pin]).stdout
    policy = host.run_root(["apt-cache", "policy", "fleet-agent"]).stdout
    assert "Installed: 1.0.0" in policy and "Candidate: 1.0.0" in policy and "1.1.0" in policy, policy
    # the record in the store, by root (apply runs as root from cloud-init's runcmd)
    assert history(host) == ["begin 1.0.0 from -", f"ship 1.0.0 from nothing by root@{host.machine}"]
    log = host.run_root(["cat", LAY.deploy_log]).stdout
    shipped = [line.split(None, 1)[1] for line in log.splitlines() if " ship: " in line]
    assert shipped == ["ship: install 1.0.0 (not installed); now 1.0.0; by root via debship"], log


def test_first_boot_with_a_failing_health_check_ends_cloud_init_in_error(
    make_booted_hosts, server, keys, tmp_path, first_boot_debs
):
    host, done, shown = first_boot(
        make_booted_hosts, server, keys, tmp_path, first_boot_debs, "fleet-agent=1.3.0", "--start-timeout", "15"
    )
    assert done.returncode == 1 and "status: error" in done.stdout, shown
    assert "scripts_user" in done.stdout or "scripts-user" in done.stdout, shown
    assert dpkg(host, "python3-debship").startswith("ii "), shown
    # apply's automatic rollback of a first install removes it: nothing left running, conffiles kept
    assert dpkg(host, "fleet-agent") == "rc 1.3.0", shown
    assert "[localhost] health   FAIL" in shown and "health command failed (exit 1)" in shown, shown
    assert "removed the package (the host had no earlier version)" in shown, shown
    for unit in (AGENT, STARTUP):
        r = host.run_root(["systemctl", "is-active", unit], check=False)
        assert r.stdout.strip() in ("inactive", "unknown"), (unit, r.stdout, journal(host, unit))
    r = host.run_root(
        ["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{first_boot_debs['port']}/healthz"], check=False
    )
    assert r.returncode != 0, r.stdout
    assert not host.run_root(["test", "-e", LAY.apt_pin], check=False).returncode == 0, "a pin for a removed package"
    # the store's history keeps the install's intent and no record of a version that was installed
    assert history(host) == ["begin 1.3.0 from -"]


def test_first_boot_follows_the_repository_and_its_timer_takes_the_next_version(
    make_booted_hosts, server, keys, tmp_path, first_boot_debs
):
    """``cloud-init --follow``: the instance installs the repository's version through ``apply
    --follow``, unpinned, and the timer's service later takes the version published after it."""
    host, done, shown = first_boot(
        make_booted_hosts, server, keys, tmp_path, first_boot_debs, "fleet-agent", mode="--follow"
    )
    assert done.returncode == 0 and "status: done" in done.stdout, shown
    assert dpkg(host, "fleet-agent") == "ii 1.0.0", shown
    assert host.run_root(["test", "-e", LAY.follow_marker], check=False).returncode == 0, shown
    assert host.run_root(["test", "-e", LAY.apt_pin], check=False).returncode != 0, "a following host is not pinned"
    timer = "debship-follow@fleet-agent.timer"
    assert host.run_root(["systemctl", "is-enabled", timer], check=False).stdout.strip() == "enabled"
    assert host.run_root(["systemctl", "is-active", timer], check=False).stdout.strip() == "active"

    publish([first_boot_debs["newer"]], server.repo, sign_key=keys.main)
    unit = "debship-follow@fleet-agent.service"
    r = host.run_root(["systemctl", "start", unit], check=False, timeout=300)
    assert r.returncode == 0, journal(host, unit)
    assert dpkg(host, "fleet-agent") == "ii 1.1.0", journal(host, unit)
    assert healthz(host, first_boot_debs["port"])["version"] == "1.1.0"


UPGRADE = """- hosts: fleet
  become: true
  gather_facts: false
  tasks:
    - debship.fleet.apply:
        package: fleet-agent=1.1.0
        repo: "{{ repo }}"
        repo_key: /etc/apt/keyrings/debship-fleet-agent.asc
"""


def test_the_ansible_module_upgrades_the_instance_and_diffs_its_units(
    make_booted_hosts, server, keys, tmp_path, first_boot_debs
):
    """After first boot, Ansible (ansible-core from PyPI, the collection in ansible/) upgrades the
    instance through the python3-debship it got at first boot: diff mode shows the version and
    the units as systemd runs them, before and after."""
    host, done, shown = first_boot(make_booted_hosts, server, keys, tmp_path, first_boot_debs, "fleet-agent=1.0.0")
    assert done.returncode == 0 and dpkg(host, "fleet-agent") == "ii 1.0.0", shown
    p = run_playbook(tmp_path, [host], UPGRADE, [f"repo={server.url}"], "--diff", "-v")
    assert p.returncode == 0 and recap(p.stdout)["h0"]["changed"] == 1, p.stdout + p.stderr
    assert dpkg(host, "fleet-agent") == "ii 1.1.0"
    units = [
        "   fleet-agent-startup.service: enabled, inactive\n",  # a oneshot: ran at install, exited
        "   fleet-agent.service: enabled, active\n",
    ]
    assert "-fleet-agent 1.0.0\n+fleet-agent 1.1.0\n" + "".join(units) in p.stdout, p.stdout
    result = json.loads(re.search(r"^changed: \[h0\] => (\{.*\})$", p.stdout, re.M).group(1))
    states = [
        {"name": "fleet-agent-startup.service", "enabled": "enabled", "active": "inactive"},
        {"name": "fleet-agent.service", "enabled": "enabled", "active": "active"},
    ]
    assert result["host_before"] == {"package": "fleet-agent", "version": "1.0.0", "units": states}
    assert result["host_after"] == {"package": "fleet-agent", "version": "1.1.0", "units": states}
    assert healthz(host, first_boot_debs["port"])["version"] == "1.1.0"
