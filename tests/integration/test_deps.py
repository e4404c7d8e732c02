"""Dependencies from the host's own archive, over real SSH to loopback hosts with real apt:
apt's simulation runs before the install, a host with no package lists refreshes them once
and gets the dependency from a signed archive served on 127.0.0.1, a dependency no source
provides is named with nothing installed, and an install that would remove another
installed package (its Conflicts:) stops before installing unless --allow-removals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.repo import publish
from tests.harness.aptrepo import export_key
from tests.harness.project import copy_sample
from tests.harness.shipping import installed, run_ship

pytestmark = pytest.mark.root


def tiny_deb(dest: Path, name: str, version: str = "1.0", **fields: str) -> Path:
    """A minimal package made with dpkg-deb itself (debship's builder has no Conflicts: field)."""
    tree = dest / f"{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    extra = "".join(f"{k}: {v}\n" for k, v in fields.items())
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        f"Maintainer: Test <t@example.com>\nDescription: test package\n{extra}"
    )
    out = dest / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True, capture_output=True)
    return out


def agent_depending_on(tmp_path: Path, *extra: str, version: str = "1.0.0") -> Path:
    project = copy_sample(tmp_path / f"agent-{version}")
    toml = project / "pyproject.toml"
    deps = ", ".join(f'"{d}"' for d in ("python3", *extra))
    toml.write_text(toml.read_text().replace('depends = ["python3"]', f"depends = [{deps}]"))
    return build_deb(project, tmp_path / f"out-{version}", version=version).path


def only_source(host, server, key: Path) -> None:
    """The host's apt sources: only the archive on 127.0.0.1 (tests reach nothing else); no lists."""
    root = host.root.path
    (root / "etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/keyrings/local-archive.gpg").write_bytes(key.read_bytes())
    (root / "etc/apt/sources.list").write_text("")
    (root / "etc/apt/sources.list.d/local-archive.sources").write_text(
        f"Types: deb\nURIs: {server.url}\nSuites: stable\nComponents: main\n"
        "Signed-By: /etc/apt/keyrings/local-archive.gpg\n"
    )
    host.run_root(["sh", "-c", "rm -rf /var/lib/apt/lists/*_Packages* /var/lib/apt/lists/*Release"])


def test_a_missing_dependency_comes_from_the_archive_after_one_refresh(ssh_host, keys, server, tmp_path):
    publish([tiny_deb(tmp_path, "helper-tool")], server.repo, sign_key=keys.main)
    only_source(ssh_host, server, export_key(keys.main, tmp_path / "archive.gpg"))
    deb = agent_depending_on(tmp_path, "helper-tool")

    r = run_ship([ssh_host], deb, "--dry-run", json_out=True)  # says what apt would do, changes nothing
    events = [json.loads(l) for l in r.output.splitlines()]
    sim = [e for e in events if e["step"] == "simulate" and e["status"] != "start"]
    assert any("lists are missing: a ship refreshes them first" in e["detail"] for e in sim), sim
    assert r.exit_code == 1 and "helper-tool, which no source on this host provides" in sim[-1]["detail"]
    assert installed(ssh_host) == "" and not list((ssh_host.root.path / "var/lib/apt/lists").glob("*Release"))

    r = run_ship([ssh_host], deb)
    assert r.exit_code == 0, r.output + r.stderr
    assert r.output.count("refreshing them (apt-get update) once") == 1
    assert "apt installs helper-tool 1.0" in r.output
    assert installed(ssh_host) == "ii 1.0.0"
    assert ssh_host.run_root(["dpkg-query", "-W", "-f=${Version}", "helper-tool"]).stdout == "1.0"

    r = run_ship([ssh_host], deb, "--dry-run", "--force")  # lists are fresh now: no refresh, nothing else
    assert "refresh" not in r.output


def test_a_dependency_no_source_provides_is_named_and_nothing_installed(ssh_host, keys, server, tmp_path):
    publish([tiny_deb(tmp_path, "helper-tool")], server.repo, sign_key=keys.main)
    only_source(ssh_host, server, export_key(keys.main, tmp_path / "archive.gpg"))
    r = run_ship([ssh_host], agent_depending_on(tmp_path, "no-such-tool"))
    assert r.exit_code == 1
    assert r.output.count("refreshing them (apt-get update) once") == 1  # lists were missing: one refresh
    assert (
        "fleet-agent depends on no-such-tool, which no source on this host provides; nothing installed"
        in r.stderr + r.output
    )
    assert installed(ssh_host) == ""
    assert "fleet-agent" not in ssh_host.run_root(["dpkg-query", "-W"]).stdout


def test_an_install_that_would_remove_another_package_stops_first(ssh_host, tmp_path):
    legacy = tiny_deb(tmp_path, "legacy-agent", Conflicts="fleet-agent")
    (ssh_host.root.path / "tmp/legacy.deb").write_bytes(legacy.read_bytes())
    ssh_host.run_root(["dpkg", "-i", "/tmp/legacy.deb"])
    deb = agent_depending_on(tmp_path)

    r = run_ship([ssh_host], deb)
    assert r.exit_code == 1
    assert (
        "installing fleet-agent 1.0.0 would remove legacy-agent 1.0 (apt's simulation; a Conflicts: or "
        "Breaks:); nothing installed: pass --allow-removals to let it"
    ) in r.stderr + r.output
    assert installed(ssh_host) in ("", "un")  # "un": dpkg knows the name only from legacy-agent's Conflicts:
    assert ssh_host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "legacy-agent"]).stdout.strip() == "ii"

    r = run_ship([ssh_host], deb, "--allow-removals")
    assert r.exit_code == 0, r.output + r.stderr
    assert "apt removes legacy-agent 1.0" in r.output and installed(ssh_host) == "ii 1.0.0"
