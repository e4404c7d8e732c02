"""``debship cloud-init --apply``: the user-data installs python3-debship from the repository and
the packages through ``debship apply`` in runcmd (read back with a YAML parser, as cloud-init does)."""

from __future__ import annotations

import pytest
import yaml

from builder import cloudinit
from builder.errors import RepoError
from builder.repo import sources_deb822

KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ0000BYJKwYBBAHaRw8BAQdA\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


def test_apply_mode_writes_debships_own_source_and_runs_debship_apply():
    text = cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0")], apply=True)
    doc = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n")
    assert doc["package_update"] is True
    assert doc["packages"] == ["python3-debship"]  # from the repository, through the source below
    # debship's own source and key (what apply --repo writes again), not cloud-init's apt module:
    # apt refuses two sources of one repository with different Signed-By
    assert "apt" not in doc
    assert doc["write_files"] == [
        {"path": "/etc/apt/keyrings/debship-fleet-agent.asc", "permissions": "0644", "content": KEY.strip() + "\n"},
        {
            "path": "/etc/apt/sources.list.d/debship-fleet-agent.sources",
            "permissions": "0644",
            "content": sources_deb822(
                "http://10.0.0.5/fleet",
                "stable",
                "main",
                "/etc/apt/keyrings/debship-fleet-agent.asc",
                "debship-fleet-agent",
            ),
        },
    ]
    assert doc["runcmd"] == [
        [
            "debship",
            "apply",
            "fleet-agent=1.2.0",
            "--repo",
            "http://10.0.0.5/fleet",
            "--repo-key",
            "/etc/apt/keyrings/debship-fleet-agent.asc",
            "--suite",
            "stable",
            "--component",
            "main",
        ],
    ]
    plain = yaml.safe_load(cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0")]))
    assert "runcmd" not in plain and plain["packages"] == [["fleet-agent", "1.2.0"]]


def test_apply_mode_passes_the_start_timeout_to_apply():
    doc = yaml.safe_load(
        cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0")], apply=True, start_timeout=15)
    )
    assert doc["runcmd"][0][-2:] == ["--start-timeout", "15"]


def test_apply_mode_takes_one_package():
    with pytest.raises(RepoError, match=r"^--apply takes one --package \(2 given\): debship keeps one apt source"):
        cloudinit.user_data(
            "http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0"), ("demo-svc", "2:1.0-1")], apply=True
        )


def test_apply_mode_needs_an_exact_version():
    with pytest.raises(RepoError, match=r"--apply needs NAME=VERSION for each --package \(fleet-agent\)"):
        cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", None)], apply=True)


def test_follow_mode_installs_with_apply_follow_and_enables_the_timer():
    text = cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", None)], follow=True)
    doc = yaml.safe_load(text)
    assert doc["packages"] == ["python3-debship"]
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert "ExecStart=/usr/bin/debship apply --follow %i\n" in files["/etc/systemd/system/debship-follow@.service"]
    assert "OnUnitActiveSec=15min\n" in files["/etc/systemd/system/debship-follow@.timer"]
    assert files["/etc/apt/apt.conf.d/50debship-phasing"] == 'APT::Get::Phase-Policy "true";\n'
    key = "/etc/apt/keyrings/debship-fleet-agent.asc"
    # debship's own source, not cloud-init's (apt refuses two sources of one repository with two keys)
    assert "apt" not in doc and "Signed-By: " + key in files["/etc/apt/sources.list.d/debship-fleet-agent.sources"]
    assert doc["runcmd"] == [
        ["debship", "apply", "--follow", "fleet-agent", "--repo", "http://10.0.0.5/fleet", "--repo-key", key]
        + ["--suite", "stable", "--component", "main"],
        ["systemctl", "enable", "--now", "debship-follow@fleet-agent.timer"],
    ]
    with pytest.raises(RepoError) as e:
        cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0")], follow=True)
    assert str(e.value) == (
        "--follow takes --package NAME without a version (fleet-agent=1.2.0): the repository's phased "
        "rollout picks the version"
    )


def test_the_cli_refuses_a_start_timeout_without_apply_and_two_packages_with_it(tmp_path):
    from builder.cli import main
    from tests.harness.helpers import cli_runner

    key = tmp_path / "archive.asc"
    key.write_text(KEY)
    base = ["cloud-init", "--repo", "http://10.0.0.5/fleet", "--repo-key", str(key), "--package", "fleet-agent=1.2.0"]
    r = cli_runner().invoke(main, [*base, "--start-timeout", "15"])
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == (
        "cloud-init: error: --start-timeout goes with --apply or --follow (debship apply's checks); "
        "add one of them or drop it\n"
    )
    r = cli_runner().invoke(main, [*base, "--apply", "--follow"])
    assert (r.exit_code, r.stdout) == (2, "") and "--apply installs one exact version, --follow" in r.stderr
    r = cli_runner().invoke(main, [*base, "--apply", "--package", "demo-svc=1.0"])
    assert r.exit_code != 0 and r.stdout == "" and "--apply takes one --package (2 given)" in r.stderr
    assert "Traceback" not in r.stderr
