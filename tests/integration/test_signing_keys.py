"""``debship publish`` refuses signing keys Debian 13's apt rejects or will soon (DSA, RSA
under 3072 bits) and warns for keys its sqv policy retires within two years (brainpool,
2028-02-01).  Real keys, made by gpg in a throwaway GNUPGHOME for this module."""

from __future__ import annotations

import subprocess
from datetime import date

import pytest

from builder import gpg
from builder.build import build_deb
from builder.cli import publish
from builder.errors import RepoError
from tests.harness.helpers import cli_runner, require_tool

ALGOS = ("rsa1024", "rsa2048", "rsa3072", "ed25519", "dsa2048", "brainpoolP256r1")


def _fingerprint(uid: str) -> str:
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys", uid], check=True, capture_output=True, text=True
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def made_keys(tmp_path_factory):
    """algorithm -> fingerprint of an unprotected signing key, plus an ed25519 key whose
    signing subkey is rsa2048 ("mixed")."""
    require_tool("gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNUPGHOME", str(home))
        made = {}
        for algo in (*ALGOS, "mixed"):
            uid = f"{algo} <{algo}@example.com>"
            subprocess.run(
                [
                    "gpg",
                    "--batch",
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    uid,
                    "ed25519" if algo == "mixed" else algo,
                    "cert" if algo == "mixed" else "sign",
                    "never",
                ],
                check=True,
                capture_output=True,
            )
            made[algo] = _fingerprint(uid)
        subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-add-key", made["mixed"], "rsa2048", "sign", "never"],
            check=True,
            capture_output=True,
        )
        yield made
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    from tests.harness.project import MINIMAL, write_project

    base = tmp_path_factory.mktemp("deb")
    return build_deb(write_project(base / "p", MINIMAL), base / "out").path


def _publish(deb, repo, key):
    return cli_runner().invoke(publish, [str(deb), "--repo", str(repo), "--sign-key", key])


@pytest.mark.parametrize(
    "algo, expect",
    [
        ("rsa1024", "RSA keys under 3072 bits are refused"),
        ("rsa2048", "retires 2048 on 2030-02-01"),
        ("dsa2048", "DSA keys are rejected by Debian 13's apt since 2024-02-01"),
        ("mixed", "(rsa2048, "),  # the signing subkey counts, not only the primary
    ],
)
def test_weak_keys_are_refused_before_anything_is_written(made_keys, deb, tmp_path, algo, expect):
    result = _publish(deb, tmp_path / "repo", made_keys[algo])
    assert result.exit_code == 7, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("publish: error: signing key ") and expect in line, line
    assert "gpg --quick-gen-key" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "repo" / "dists").exists() and not (tmp_path / "repo" / "pool").exists()


@pytest.mark.parametrize("algo", ["rsa3072", "ed25519"])
def test_strong_keys_publish_without_a_word(made_keys, deb, tmp_path, algo):
    result = _publish(deb, tmp_path / "repo", made_keys[algo])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert (tmp_path / "repo" / "dists" / "stable" / "InRelease").is_file()


def test_a_key_apt_retires_within_two_years_is_a_warning_then_refused(made_keys):
    key = made_keys["brainpoolP256r1"]
    assert gpg.check_key_policy(key, today=date(2025, 6, 1)) == []  # cut-off 2028-02-01: > 2 years
    (warning,) = gpg.check_key_policy(key, today=date(2026, 12, 4))
    assert "rejects brainpool keys from 2028-02-01" in warning and "brainpoolP256r1" in warning
    with pytest.raises(RepoError, match="rejects brainpool keys since 2028-02-01"):
        gpg.check_key_policy(key, today=date(2028, 2, 1))


def test_the_publish_command_prints_the_warning(made_keys, deb, tmp_path, monkeypatch):
    # the date is the only thing faked: the key, gpg and the repository are real
    real = gpg.check_key_policy
    monkeypatch.setattr(gpg, "check_key_policy", lambda key, today=None: real(key, date(2027, 1, 1)))
    result = _publish(deb, tmp_path / "repo", made_keys["brainpoolP256r1"])
    assert result.exit_code == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("publish: warning: signing key ") and "2028-02-01" in line


def test_the_signing_keys_gpg_lists(made_keys):
    (rsa,) = gpg.signing_keys(made_keys["rsa3072"])
    assert (rsa.algorithm, rsa.bits, rsa.fingerprint) == ("rsa", 3072, made_keys["rsa3072"])
    (ed,) = gpg.signing_keys(made_keys["ed25519"])
    assert (ed.algorithm, ed.curve) == ("eddsa", "ed25519")
    primary, sub = gpg.signing_keys(made_keys["mixed"])
    assert (primary.algorithm, sub.algorithm, sub.bits) == ("eddsa", "rsa", 2048)
