"""apt's simulation parsed (``deps.parse_simulation``) on real ``apt-get install -s`` output
captured from a loopback root (tests/unit/captured/apt-sim-*.txt: an install that removes a
conflicting package, unmet dependencies, an upgrade pulling in a new package, a downgrade) and
from a Debian 13 root (apt3-sim-*.txt: apt 3.0's apt-get, which adds "Solving dependencies..." and
its solver's own explanation after the E: lines)."""

from __future__ import annotations

from pathlib import Path

from builder.ship import deps

CAPTURED = Path(__file__).parent / "captured"


def sim(name: str) -> deps.Simulation:
    return deps.parse_simulation((CAPTURED / f"apt-sim-{name}.txt").read_text())


def test_an_install_that_removes_another_package():
    s = sim("removes-other")
    assert s.ok and s.installs == (("fleet-agent", "7.0"),) and s.removes == (("legacy-agent", "1.0"),)
    assert s.besides("fleet-agent").summary() == "removes legacy-agent 1.0"


def test_unmet_dependencies_are_named_with_apt_reasons():
    s = sim("unmet")
    assert not s.ok and s.error == "Unable to correct problems, you have held broken packages."
    assert [u.explain() for u in s.unmet] == [
        "fleet-agent depends on no-such-tool, which no source on this host provides",
        "fleet-agent depends on other-tool (>= 2) | third-tool, which no source on this host provides",
        "fleet-agent depends on helper-tool (>= 3), but the host's sources have only 1.0",
    ]
    assert s.installs == s.upgrades == s.removes == ()


def test_apt_3_output_of_debian_13_parses_the_same():
    s = deps.parse_simulation((CAPTURED / "apt3-sim-unmet.txt").read_text())
    assert not s.ok and s.error == "Unable to correct problems, you have held broken packages."
    assert [u.explain() for u in s.unmet] == [
        "fleet-agent depends on no-such-tool, which no source on this host provides",
        "fleet-agent depends on other-tool (>= 2) | third-tool, which no source on this host provides",
        "fleet-agent depends on apt (>= 99), but the host's sources have only 3.0.4",
    ]
    s = deps.parse_simulation((CAPTURED / "apt3-sim-removes-other.txt").read_text())
    assert s.ok and s.installs == (("fleet-agent", "7.0"),) and s.removes == (("legacy-agent", "1.0"),)


def test_upgrade_new_dependency_and_downgrade():
    s = sim("upgrade-and-new")
    assert s.upgrades == (("fleet-agent", "6.0", "7.0"),) and s.installs == (("helper-tool", "1.0"),)
    assert s.besides("fleet-agent").summary() == "installs helper-tool 1.0"
    assert s.as_dict()["install"] == [{"package": "helper-tool", "version": "1.0"}]
    down = sim("downgrade")
    assert (
        down.upgrades == (("fleet-agent", "7.0", "6.0"),)
        and down.besides("fleet-agent").summary() == "no other package changes"
    )


def test_simulate_command_is_the_install_with_s_and_writes_no_cache():
    argv = deps.simulate_command("/var/lib/debship/x/x_1_all.deb", downgrade=True)
    assert argv[:4] == ["sh", "-c", '"$@" 2>&1', "sh"]
    rest = argv[4:]
    assert rest[rest.index("install") + 1] == "-s" and "-y" not in rest and rest[-1].endswith(".deb")
    assert "--allow-downgrades" in rest and "Dir::Cache::pkgcache=" in rest
    assert "Dir::Log::Planner=/dev/null" in rest


def test_lists_prefix_is_apts_file_name_for_the_source():
    # apt-get indextargets on Debian 13 for "deb https://u:p@repo.example:8443/~ops/my_repo/ stable main":
    # /var/lib/apt/lists/repo.example:8443_%7eops_my%5frepo_dists_stable_main_binary-amd64_Packages
    assert deps.lists_prefix("https://u:p@repo.example:8443/~ops/my_repo/") == "repo.example:8443_%7eops_my%5frepo_"
    assert deps.lists_prefix("http://127.0.0.1:37023") == "127.0.0.1:37023_"


def test_lists_age():
    assert deps.parse_lists_age("missing\n") is None and deps.parse_lists_age("42\n") == 42.0
    assert deps.lists_age_command("http://127.0.0.1:8080/repo/")[-1] == "127.0.0.1:8080_repo_"
    assert deps.lists_age_command(None)[-1] == ""
