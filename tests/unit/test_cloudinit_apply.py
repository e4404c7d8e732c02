"""``debship cloud-init --apply``: the user-data installs python3-debship from the repository and
the packages through ``debship apply`` in runcmd (read back with a YAML parser, as cloud-init does)."""

from __future__ import annotations

import pytest
import yaml

from builder import cloudinit
from builder.errors import RepoError

KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ0000BYJKwYBBAHaRw8BAQdA\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


def test_apply_mode_runs_debship_apply_for_each_package():
    text = cloudinit.user_data(
        "http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0"), ("demo-svc", "2:1.0-1")], apply=True
    )
    doc = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n")
    assert doc["packages"] == ["python3-debship"]  # from the repository, whose source the apt module adds
    assert "signed-by=$KEY_FILE" in doc["apt"]["sources"]["debship.list"]["source"]
    assert doc["write_files"] == [
        {"path": "/etc/debship/debship-archive.asc", "permissions": "0644", "content": KEY.strip() + "\n"}
    ]
    assert doc["runcmd"] == [
        [
            "debship",
            "apply",
            "fleet-agent=1.2.0",
            "--repo",
            "http://10.0.0.5/fleet",
            "--repo-key",
            "/etc/debship/debship-archive.asc",
            "--suite",
            "stable",
            "--component",
            "main",
        ],
        [
            "debship",
            "apply",
            "demo-svc=2:1.0-1",
            "--repo",
            "http://10.0.0.5/fleet",
            "--repo-key",
            "/etc/debship/debship-archive.asc",
            "--suite",
            "stable",
            "--component",
            "main",
        ],
    ]
    plain = yaml.safe_load(cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("fleet-agent", "1.2.0")]))
    assert "runcmd" not in plain and plain["packages"] == [["fleet-agent", "1.2.0"]]


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
    key = "/etc/debship/debship-archive.asc"
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
