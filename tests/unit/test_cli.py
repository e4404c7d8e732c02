"""The CLI's own behaviour: output contracts and help texts."""

from __future__ import annotations

import json

import click
import pytest

from builder.cli import build_deb, main, ship
from tests.harness.helpers import cli_runner


def runner():
    return cli_runner()


def _all_commands():
    """Every command: the short ones and each one of the `debship` group."""
    return [build_deb, ship, main, *main.commands.values()]


@pytest.mark.parametrize("command", _all_commands(), ids=lambda c: c.name)
def test_every_command_and_option_has_help(command):
    assert command.help and command.help.strip()
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help and param.help.strip(), f"{command.name} {param.opts} has no help text"


def test_json_is_one_object_describing_the_deb(project, tmp_path):
    r = runner().invoke(build_deb, ["--project", str(project), "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) == {"path", "name", "version", "architecture", "sha256", "size"}
    assert data["name"] == "demo-svc" and data["version"] == "1.0.0" and data["architecture"] == "all"
    assert (tmp_path / "out" / "demo-svc_1.0.0_all.deb").stat().st_size == data["size"]


def test_list_shows_what_goes_where_without_building(project, tmp_path):
    r = runner().invoke(build_deb, ["--project", str(project), "--out", str(tmp_path / "out"), "--list"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "demo-svc 1.0.0 (all)"
    assert any("/usr/lib/demo-svc/serve.py" in l and "0755" in l and "scripts/serve.py" in l for l in lines)
    assert any("/etc/demo-svc/demo.conf" in l and "conffile" in l for l in lines)
    assert "  unit demo-svc.service: enable=yes start=yes on-upgrade=restart" in lines
    assert not (tmp_path / "out").exists()


def test_version_override_converts_pep440(project, tmp_path):
    r = runner().invoke(build_deb, ["--project", str(project), "--out", str(tmp_path), "--version", "2.0.0rc1"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].endswith("demo-svc_2.0.0~rc1_all.deb")


def test_zstd_warns_about_old_dpkg(project, tmp_path):
    r = runner().invoke(build_deb, ["--project", str(project), "--out", str(tmp_path), "--compression", "zstd"])
    assert r.exit_code == 0, r.stderr
    assert "zstd needs dpkg >= 1.21.18" in r.stderr


def test_debship_group_runs_the_same_commands(project, tmp_path):
    assert main.commands["build"] is build_deb and main.commands["ship"] is ship
    r = runner().invoke(main, ["build", "--project", str(project), "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "demo-svc"
    r = runner().invoke(main, ["ship", "--host", "h", "--project", str(tmp_path / "nothing")])
    assert r.exit_code == 6 and r.stderr.startswith("ship: error: ")


def test_ship_exit_codes_mean_one_thing_each(project, tmp_path):
    """Before any host is reached ship exits 2 (bad usage) or 6 (nothing could be shipped), never 3 or 5."""
    deb = runner().invoke(build_deb, ["--project", str(project), "--out", str(tmp_path / "out")]).stdout.split()[-1]
    bad_host = runner().invoke(ship, [deb, "--host", "bad host!"])
    assert bad_host.exit_code == 2 and bad_host.stderr.startswith("ship: error: host 'bad host!': not a host")
    key = tmp_path / "not-a-key"
    key.write_text("hello\n")
    bad_key = runner().invoke(ship, [deb, "--host", "h", "--via-repo", "http://127.0.0.1:9/", "--repo-key", str(key)])
    assert bad_key.exit_code == 6 and "is not an OpenPGP public key" in bad_key.stderr
    assert len(bad_key.stderr.strip().splitlines()) == 1
    no_key = runner().invoke(ship, [deb, "--host", "h", "--via-repo", "http://127.0.0.1:9/"])
    assert no_key.exit_code == 2 and "--via-repo and --repo-key go together" in no_key.stderr
