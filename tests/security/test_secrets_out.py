"""Admitted secrets (``allow-secrets``: installed 0600) stay out of repositories and diffs:
``publish`` refuses a package carrying one unless --publish-secrets, ``diff`` says that one
changed and never shows its contents, digest or size (text and --json)."""

from __future__ import annotations

import hashlib
import json

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.debsecrets import admitted_secrets
from tests.harness.helpers import cli_runner
from tests.harness.project import MINIMAL, write_project

OLD_SECRET, NEW_SECRET = "hunter2-old-SECRET-a81f", "hunter2-new-SECRET-c3d9"


def key_text(secret: str) -> str:
    return f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def secret_debs(tmp_path):
    files = dict(MINIMAL)
    files["debship.toml"] = MINIMAL["debship.toml"] + '        allow-secrets = ["configs/tls/server.key"]\n'
    files["configs/tls/server.key"] = key_text(OLD_SECRET)
    project = write_project(tmp_path / "project", files)
    old = build_deb(project, tmp_path / "old", "1.0.0").path
    (project / "configs/tls/server.key").write_text(key_text(NEW_SECRET))
    new = build_deb(project, tmp_path / "new", "1.1.0").path
    plain = build_deb(write_project(tmp_path / "plain", MINIMAL), tmp_path / "plain-out", "0.9.0").path
    return old, new, plain


def test_admitted_secrets_are_read_back_from_the_package(secret_debs):
    old, _, plain = secret_debs
    assert admitted_secrets(old) == ("/etc/demo-svc/tls/server.key",)
    assert admitted_secrets(plain) == ()


def test_publish_refuses_a_package_with_an_admitted_secret_unless_told(secret_debs, keys, tmp_path):
    old, _, plain = secret_debs
    repo = tmp_path / "repo"
    r = cli_runner().invoke(main, ["publish", str(old), "--repo", str(repo), "--sign-key", keys.main])
    assert r.exit_code == 7, r.output + r.stderr
    assert r.stderr.strip().splitlines() == [
        f"publish: error: {old}: carries admitted secrets (/etc/demo-svc/tls/server.key); anyone who can reach the "
        "repository can download the package and read them: ship it to the hosts directly, or pass "
        "--publish-secrets if publishing them is meant"
    ]
    assert not list(repo.rglob("*.deb")) and not (repo / "dists").exists()
    r = cli_runner().invoke(main, ["publish", str(plain), "--repo", str(repo), "--sign-key", keys.main])
    assert r.exit_code == 0, r.output + r.stderr
    r = cli_runner().invoke(
        main, ["publish", str(old), "--repo", str(repo), "--sign-key", keys.main, "--publish-secrets"]
    )
    assert r.exit_code == 0, r.output + r.stderr
    assert "added pool/main/d/demo-svc/demo-svc_1.0.0_all.deb" in r.output


def test_diff_says_a_secret_changed_and_never_shows_it(secret_debs):
    old, new, _ = secret_debs
    forbidden = [OLD_SECRET, NEW_SECRET]
    for secret in (OLD_SECRET, NEW_SECRET):
        forbidden.append(hashlib.sha256(key_text(secret).encode()).hexdigest())
    text = cli_runner().invoke(main, ["diff", str(old), str(new)])
    assert text.exit_code == 0, text.output + text.stderr
    assert "~ /etc/demo-svc/tls/server.key  content (an admitted secret: not shown)  [conffile]" in text.output
    assert "an admitted secret changed: contents not shown" in text.output
    as_json = cli_runner().invoke(main, ["diff", str(old), str(new), "--json"])
    assert as_json.exit_code == 0, as_json.output + as_json.stderr
    data = json.loads(as_json.output)
    entry = data["details"]["files"]["/etc/demo-svc/tls/server.key"]
    assert entry["secret"] is True and entry["diff"] == "" and "size" not in entry["changes"]
    assert "/etc/demo-svc/tls/server.key" in data["conffiles_changed"]
    for out in (text.output, as_json.output):
        for value in forbidden:
            assert value not in out
    assert "port = 8080" not in text.output  # (the plain conffile did not change: nothing to show)
