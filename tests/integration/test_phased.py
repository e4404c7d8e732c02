"""Phased rollouts from the repository (``publish --phase``, ``debship phase``) read by real apt
2.6 in loopback roots, each a machine of its own (a distinct /etc/machine-id, apt run in a PID
namespace of its own so that it does not see a chroot): plain ``apt-get upgrade`` takes a
phased version exactly on the machines whose bucket (``tests/harness/phasing.py``, computed
apart from apt) is under the percentage, and ``debship apply --follow`` does the same with
its checks, its local rollback and a refusal of the version it rolled back from."""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.repo import publish, sources_deb822
from tests.harness.applying import install_debship
from tests.harness.aptrepo import export_key
from tests.harness.fixtures import require_root_host
from tests.harness.helpers import _missing, cli_runner
from tests.harness.phasing import draw, machine_id, run_as_machine, takes
from tests.harness.project import MINIMAL, write_project

pytestmark = pytest.mark.root
NONINTERACTIVE = {"DEBIAN_FRONTEND": "noninteractive"}


class Machine:
    """A loopback root with a machine id of its own (``.root`` as the hosts of the harness)."""

    def __init__(self, root, mid: str):
        self.root, self.mid = root, mid
        (root.path / "etc/machine-id").write_text(mid + "\n")

    def run(self, *argv: str, env: dict | None = None):
        return run_as_machine(self.root, list(argv), env)

    def version(self, name: str) -> str | None:
        r = self.root.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", name], check=False)
        return r.stdout[3:] if r.stdout.startswith("ii") else None


@pytest.fixture
def machines(tmp_path):
    require_root_host()
    from hostlab.rootfs import Root, cached_root

    lower = cached_root()
    with contextlib.ExitStack() as stack:

        def make(n: int, salt: str) -> list[Machine]:
            return [Machine(stack.enter_context(Root(lower, workdir=tmp_path)), machine_id(i, salt)) for i in range(n)]

        yield make


def each(hosts: list[Machine], fn) -> list:
    """``fn(host)`` on every host, four at a time (each its own root and apt); (host, result) in order."""
    with ThreadPoolExecutor(4) as pool:
        return list(zip(hosts, pool.map(fn, hosts)))


def phase(repo, name, version, *how, key):
    r = cli_runner().invoke(main, ["phase", str(repo), name, version, *how, "--sign-key", key])
    assert r.exit_code == 0, r.output + r.stderr
    return r.output


def add_source(m: Machine, url: str, key: str) -> None:
    keyring = m.root.path / "etc/apt/keyrings"
    keyring.mkdir(parents=True, exist_ok=True)
    export_key(key, keyring / "phased.gpg")
    (m.root.path / "etc/apt/sources.list.d/phased.sources").write_text(
        sources_deb822(url, "stable", "main", "/etc/apt/keyrings/phased.gpg", "phased")
    )


def test_plain_apt_upgrade_takes_a_phased_version_where_the_bucket_says(machines, keys, server, tmp_path):
    project = write_project(tmp_path / "project", MINIMAL)
    v1, v2 = (build_deb(project, tmp_path / v, v).path for v in ("1.0.0", "2.0.0"))
    publish([v1], server.repo, sign_key=keys.main)
    r = cli_runner().invoke(
        main, ["publish", str(v2), "--repo", str(server.repo), "--sign-key", keys.main, "--phase", "25"]
    )
    assert r.exit_code == 0 and "(phased: 25% of hosts)" in r.output, r.output + r.stderr
    hosts = machines(8, "plain")
    expected = {m.mid for m in hosts if takes("demo-svc", "2.0.0", m.mid, 25)}
    assert 0 < len(expected) < len(hosts), "the fixed machine ids must split at 25 %"

    def set_up(m):
        add_source(m, server.url, keys.main)
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "demo-svc=1.0.0"]):
            p = m.run(*argv, env=NONINTERACTIVE)
            if p.returncode != 0:
                return p
        return p

    for _, p in each(hosts, set_up):
        assert p.returncode == 0, p.stdout + p.stderr

    policy = hosts[0].run("apt-cache", "policy", "demo-svc").stdout
    assert "2.0.0 500 (phased 25%)" in policy and "Candidate: 2.0.0" in policy, policy
    for _ in range(2):  # the same machines on a second run
        for m, p in each(hosts, lambda m: m.run("apt-get", "upgrade", "-y", "-q", env=NONINTERACTIVE)):
            assert p.returncode == 0, p.stdout + p.stderr
            if m.mid not in expected:
                assert "kept back" in p.stdout and "demo-svc" in p.stdout, p.stdout
        assert {m.mid for m in hosts if m.version("demo-svc") == "2.0.0"} == expected

    left_out = next(m for m in hosts if m.mid not in expected)
    # apt phases upgrades only: an explicit install takes the version whatever the bucket
    sim = left_out.run("apt-get", "-s", "install", "demo-svc").stdout
    assert "Inst demo-svc [1.0.0] (2.0.0 " in sim, sim
    # in a chroot (ischroot) apt turns phasing off: the same root chrooted takes it
    sim = left_out.root.run(["apt-get", "-s", "upgrade"]).stdout
    assert "Inst demo-svc [1.0.0] (2.0.0 " in sim, sim

    assert "25% -> complete" in phase(server.repo, "demo-svc", "2.0.0", "--complete", key=keys.main)

    def upgrade(m):
        m.run("apt-get", "update", "-q")
        return m.run("apt-get", "upgrade", "-y", "-q", env=NONINTERACTIVE)

    for m, p in each(hosts, upgrade):
        assert p.returncode == 0 and m.version("demo-svc") == "2.0.0", p.stdout + p.stderr


def test_halt_at_zero_still_lets_apt_take_it_where_the_draw_is_zero(machines, keys, server, tmp_path):
    """apt draws 0..100 and takes the version when the draw is <= the percentage: at 0 % one machine
    in 101 still takes it with plain apt (apply --follow does not: a halted version is never taken)."""
    project = write_project(tmp_path / "project", MINIMAL)
    v1, v2 = (build_deb(project, tmp_path / v, v).path for v in ("1.0.0", "2.0.0"))
    publish([v1], server.repo, sign_key=keys.main)
    publish([v2], server.repo, sign_key=keys.main, phase=0)
    zero = next(machine_id(i, "zero") for i in range(5000) if draw("demo-svc", "2.0.0", machine_id(i, "zero")) == 0)
    one = next(machine_id(i, "zero") for i in range(5000) if draw("demo-svc", "2.0.0", machine_id(i, "zero")) == 1)
    hosts = machines(1, "zero")
    m = hosts[0]
    add_source(m, server.url, keys.main)
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "demo-svc=1.0.0"]):
        assert m.run(*argv, env=NONINTERACTIVE).returncode == 0
    for mid, took in ((one, False), (zero, True)):
        (m.root.path / "etc/machine-id").write_text(mid + "\n")
        sim = m.run("apt-get", "-s", "upgrade").stdout
        assert ("Inst demo-svc [1.0.0] (2.0.0 " in sim) is took, sim


def test_unattended_upgrades_phases_only_with_the_phase_policy(tmp_path, keys, server):
    """unattended-upgrades 2.9 (Debian 12) marks upgrades itself (python-apt), outside apt's upgrade
    calculation: it takes a phased version on a machine outside the bucket, unless apt phases the
    candidate itself (``APT::Get::Phase-Policy``, what ``cloud-init --follow`` writes)."""
    require_root_host()
    from builder.cloudinit import PHASING_CONF, PHASING_TEXT
    from hostlab.rootfs import ROOT_PACKAGES, Root, cached_root

    project = write_project(tmp_path / "project", MINIMAL)
    v1, v2 = (build_deb(project, tmp_path / v, v).path for v in ("1.0.0", "2.0.0"))
    publish([v1], server.repo, sign_key=keys.main)
    publish([v2], server.repo, sign_key=keys.main, phase=10)
    ids = [machine_id(i, "uu") for i in range(40)]
    outside = next(i for i in ids if not takes("demo-svc", "2.0.0", i, 10))
    inside = next(i for i in ids if takes("demo-svc", "2.0.0", i, 10))
    lower = cached_root(tuple(sorted({*ROOT_PACKAGES, "unattended-upgrades"})))
    with Root(lower, workdir=tmp_path) as plain, Root(lower, workdir=tmp_path) as policy:
        machines = [Machine(plain, outside), Machine(policy, outside)]
        (policy.path / PHASING_CONF.lstrip("/")).write_text(PHASING_TEXT)
        for m in machines:
            add_source(m, server.url, keys.main)
            (m.root.path / "etc/apt/apt.conf.d/51debship-test").write_text(
                'Unattended-Upgrade::Origins-Pattern { "origin=debship"; };\n'
            )
            for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "demo-svc=1.0.0"]):
                p = m.run(*argv, env=NONINTERACTIVE)
                assert p.returncode == 0, p.stdout + p.stderr
        pol = machines[1].run("apt-cache", "policy", "demo-svc").stdout
        assert "Candidate: 1.0.0" in pol and "2.0.0 1 (phased 10%)" in pol, pol
        assert "Inst demo-svc" not in machines[1].run("apt-get", "-s", "install", "demo-svc").stdout
        for m in machines:
            p = m.run("unattended-upgrade", env=NONINTERACTIVE)
            assert p.returncode == 0, p.stdout + p.stderr
        assert [m.version("demo-svc") for m in machines] == ["2.0.0", "1.0.0"]
        (policy.path / "etc/machine-id").write_text(inside + "\n")  # a machine in the bucket takes it
        p = machines[1].run("unattended-upgrade", env=NONINTERACTIVE)
        assert p.returncode == 0 and machines[1].version("demo-svc") == "2.0.0", p.stdout + p.stderr


def test_apply_follow_takes_phases_rolls_back_and_refuses(machines, keys, server, apply_debs):
    if sys.version_info[:2] != (3, 11):
        _missing("a Python 3.11 venv (its compiled libraries are copied into the Debian 12 hosts)")
    name = "fleet-agent"
    publish([apply_debs["1.0.0"]], server.repo, sign_key=keys.main)
    hosts = machines(8, "follow")
    from builder.cloudinit import PHASING_CONF, PHASING_TEXT

    for m in hosts:
        if hosts.index(m) % 2:  # half phase the candidate itself, as cloud-init --follow sets them up
            (m.root.path / PHASING_CONF.lstrip("/")).write_text(PHASING_TEXT)
        install_debship(m)
        export_key(keys.main, m.root.path / "root/archive.gpg")

    def follow(m, *extra):
        return m.run("debship", "apply", "--follow", name, *extra)

    first = ["--repo", server.url, "--repo-key", "/root/archive.gpg"]
    for m, p in each(hosts, lambda m: follow(m, *first)):
        assert p.returncode == 0 and m.version(name) == "1.0.0", p.stdout + p.stderr
        assert not (m.root.path / f"etc/apt/preferences.d/debship-{name}.pref").exists()
        assert (m.root.path / f"etc/debship/follow/{name}").read_text().strip() == server.url

    publish([apply_debs["2.0.0"]], server.repo, sign_key=keys.main, phase=25)
    expected = {m.mid for m in hosts if takes(name, "2.0.0", m.mid, 25)}
    assert 0 < len(expected) < len(hosts), "the fixed machine ids must split at 25 %"
    for _ in range(2):  # the same machines on a second run (the source is remembered)
        for m, p in each(hosts, follow):
            assert p.returncode == 0, p.stdout + p.stderr
            if m.mid not in expected:
                assert "this machine's bucket is not under its percentage" in p.stdout, p.stdout
        assert {m.mid for m in hosts if m.version(name) == "2.0.0"} == expected

    phase(server.repo, name, "2.0.0", "--percent", "100", key=keys.main)
    for m, p in each(hosts, follow):
        assert p.returncode == 0 and m.version(name) == "2.0.0", p.stdout + p.stderr

    # a bad version at 50 %: the machines it reaches fail its checks and go back by themselves
    publish([apply_debs["3.0.0-bad"]], server.repo, sign_key=keys.main, phase=50)
    bad = {m.mid for m in hosts if takes(name, "3.0.0", m.mid, 50)}
    assert bad, "some machine must be in the 50 % bucket"
    for m, p in each(hosts, follow):
        if m.mid in bad:
            assert p.returncode == 3 and "rolled back to 2.0.0" in p.stdout, p.stdout + p.stderr
            refused = (m.root.path / f"etc/apt/preferences.d/debship-{name}-refused.pref").read_text()
            assert "Pin: version 3.0.0\nPin-Priority: -1" in refused
        else:
            assert p.returncode == 0, p.stdout + p.stderr
        assert m.version(name) == "2.0.0"
    assert "50% -> halted (0%)" in phase(server.repo, name, "3.0.0", "--halt", key=keys.main)
    for m, p in each(hosts, follow):  # halted: no machine takes it, and those that failed it do not retry
        assert p.returncode == 0 and m.version(name) == "2.0.0", p.stdout + p.stderr
    # the refusal holds even when the version is offered to everyone, and for plain apt too
    phase(server.repo, name, "3.0.0", "--complete", key=keys.main)
    failed = next(m for m in hosts if m.mid in bad)
    p = follow(failed)
    assert p.returncode == 0 and failed.version(name) == "2.0.0", p.stdout + p.stderr
    assert "newest version" in p.stdout, p.stdout
    assert failed.run("apt-get", "update", "-q").returncode == 0
    sim = failed.run("apt-get", "-s", "upgrade").stdout
    assert "Inst fleet-agent" not in sim and "3.0.0" not in sim, sim

    # a push to a following host is refused unless --take-over; push-managed hosts refuse --follow
    p = failed.run("debship", "apply", f"{name}=2.0.0", *first)
    assert p.returncode == 1 and "follows the repository" in p.stdout + p.stderr, p.stdout + p.stderr
    p = failed.run("debship", "apply", f"{name}=2.0.0", *first, "--take-over")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (failed.root.path / f"etc/apt/preferences.d/debship-{name}.pref").exists()
    assert not (failed.root.path / f"etc/debship/follow/{name}").exists()
    assert not (failed.root.path / f"etc/apt/preferences.d/debship-{name}-refused.pref").exists()
    p = follow(failed)
    assert p.returncode == 6 and p.stderr.startswith("apply: error: fleet-agent is push-managed on this host"), p.stderr
    # following again: the push dropped the refusals, so the bad version (now at 100 %) is tried,
    # fails, is rolled back and refused again; the host stays unpinned
    p = follow(failed, "--take-over")
    assert p.returncode == 3 and "rolled back to 2.0.0" in p.stdout, p.stdout + p.stderr
    assert not (failed.root.path / f"etc/apt/preferences.d/debship-{name}.pref").exists()
    assert "Pin: version 3.0.0" in (failed.root.path / f"etc/apt/preferences.d/debship-{name}-refused.pref").read_text()
    assert follow(failed).returncode == 0 and failed.version(name) == "2.0.0"


def test_phase_bad_input_is_one_line(keys, server, tmp_path):
    project = write_project(tmp_path / "project", MINIMAL)
    publish([build_deb(project, tmp_path / "1", "1.0.0").path], server.repo, sign_key=keys.main)
    before = {p: p.read_bytes() for p in server.repo.rglob("*") if p.is_file()}
    cases = [
        (
            ["demo-svc", "9.9.9", "--percent", "10"],
            7,
            "demo-svc 9.9.9 is not published in stable/main (published versions: 1.0.0); check the version",
        ),
        (
            ["nope", "1.0.0", "--halt"],
            7,
            "nope 1.0.0 is not published in stable/main (no package nope is published there); check the version",
        ),
        (
            ["demo-svc", "1.0.0", "--percent", "101"],
            7,
            "phase 101 is not a percentage of hosts; give a whole number from 0 to 100",
        ),
        (["demo-svc", "1.0.0"], 2, "give exactly one of --percent P, --halt or --complete (got none)"),
        (
            ["demo-svc", "1.0.0", "--halt", "--complete"],
            2,
            "give exactly one of --percent P, --halt or --complete (got --halt, --complete)",
        ),
    ]
    for args, code, message in cases:
        r = cli_runner().invoke(main, ["phase", str(server.repo), *args, "--sign-key", keys.main])
        assert (r.exit_code, r.stderr) == (code, f"phase: error: {message}\n"), r.output + r.stderr
    r = cli_runner().invoke(
        main, ["phase", str(tmp_path / "none"), "demo-svc", "1.0.0", "--halt", "--sign-key", keys.main]
    )
    assert r.exit_code == 7 and "no suite 'stable' published there" in r.stderr
    assert {p: p.read_bytes() for p in server.repo.rglob("*") if p.is_file() and p.name != ".debship-publish.lock"} == {
        p: b for p, b in before.items() if p.name != ".debship-publish.lock"
    }


def test_phases_live_in_the_signed_index_and_survive_later_publishes(keys, server, tmp_path):
    project = write_project(tmp_path / "project", MINIMAL)
    v1, v2 = (build_deb(project, tmp_path / v, v).path for v in ("1.0.0", "2.0.0"))
    packages = server.repo / "dists/stable/main/binary-amd64/Packages"

    def phases() -> dict:
        out = {}
        for stanza in packages.read_text().split("\n\n"):
            fields = dict(l.split(": ", 1) for l in stanza.splitlines() if ": " in l)
            out[fields["Version"]] = fields.get("Phased-Update-Percentage")
        return out

    publish([v1], server.repo, sign_key=keys.main, phase=30)
    publish([v2], server.repo, sign_key=keys.main)  # a later publish keeps 1.0.0's phase
    assert phases() == {"1.0.0": "30", "2.0.0": None}
    (server.repo / ".debship-pool.json").unlink()  # the phase is read from the index, not the cache
    out = phase(server.repo, "demo-svc", "2.0.0", "--percent", "10", key=keys.main)
    assert out == "demo-svc 2.0.0: 100% -> 10%; stable/main signed\n"
    assert phases() == {"1.0.0": "30", "2.0.0": "10"}
    inrelease = server.repo / "dists/stable/InRelease"
    stamp = inrelease.stat().st_mtime_ns
    assert "already 10%; nothing written" in phase(server.repo, "demo-svc", "2.0.0", "--percent", "10", key=keys.main)
    assert inrelease.stat().st_mtime_ns == stamp
    phase(server.repo, "demo-svc", "1.0.0", "--complete", key=keys.main)
    assert phases() == {"1.0.0": None, "2.0.0": "10"}
    assert inrelease.stat().st_mtime > stamp / 1e9  # the same-second rule: dated after the one it replaced
    r = cli_runner().invoke(
        main, ["publish", str(v1), "--repo", str(tmp_path / "r2"), "--sign-key", keys.main, "--phase", "101"]
    )
    assert (r.exit_code, r.stderr) == (
        7,
        "publish: error: phase 101 is not a percentage of hosts; give a whole number from 0 to 100\n",
    )
    assert not (tmp_path / "r2").exists()
