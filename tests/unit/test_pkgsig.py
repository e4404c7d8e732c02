"""The pure parsers of the host-side security checks, on captured real output: gpgv's status
lines (gpgv 2.2.40, Debian 12) for a good, a foreign and a bad signature, the same told by the
check's sqv branch (sqv 1.3.0, Debian 13, which has no gpgv) plus a SHA-1 signature sqv's policy
rejects, and the guard's
UNSAFE report; and key files for hosts (armored → binary, as gpgv needs)."""

from __future__ import annotations

import pytest

from builder import gpg
from builder.errors import DebshipError
from builder.hostguard import unsafe_message
from builder.pkgsig import TrustedKey, dearmor, verdict

GOOD = """[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED D0120DFD06A487C79D1E65AD873120DDF3505EAB 0
[GNUPG:] SIG_ID 7ghPoTjAwipBInqLWIgWeAepSVM 2026-12-04 1796405211
[GNUPG:] KEY_CONSIDERED D0120DFD06A487C79D1E65AD873120DDF3505EAB 0
[GNUPG:] GOODSIG 873120DDF3505EAB t <t@e>
[GNUPG:] VALIDSIG D0120DFD06A487C79D1E65AD873120DDF3505EAB 2026-12-04 1796405211 0 4 0 22 8 00 D0120DFD06A487C79D1E65AD873120DDF3505EAB
"""
FOREIGN = """[GNUPG:] NEWSIG o@e
[GNUPG:] ERRSIG F2A7EF5FC8EB6058 22 8 00 1796405211 9 26A5340C306AFB4CC4F05047F2A7EF5FC8EB6058
[GNUPG:] NO_PUBKEY F2A7EF5FC8EB6058
"""
BAD = """[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED D0120DFD06A487C79D1E65AD873120DDF3505EAB 0
[GNUPG:] KEY_CONSIDERED D0120DFD06A487C79D1E65AD873120DDF3505EAB 0
[GNUPG:] BADSIG 873120DDF3505EAB t <t@e>
"""
# verify_command's output on a Debian 13 root (sqv 1.3.0): sqv's answer as gpgv's status lines.
SQV_GOOD = "[GNUPG:] VALIDSIG 2E2E5DAB6EFDA715577F5514F5A3257082CC7C5B\n"
SQV_FOREIGN = (
    "[GNUPG:] NO_PUBKEY 2E2E5DAB6EFDA715577F5514F5A3257082CC7C5B\n"
    "SQV Missing key 2E2E5DAB6EFDA715577F5514F5A3257082CC7C5B, which is needed to verify signature.\n"
)
SQV_BAD = "[GNUPG:] BADSIG\nSQV Verifying signature:\nSQV Message has been manipulated\n"
SQV_SHA1 = (
    "SQV Verifying signature:\n"
    "SQV Policy rejected non-revocation signature (Binary) requiring collision resistance\n"
    "SQV because: SHA1 is not considered secure since 2013-02-01T00:00:00Z\n"
)
WHAT = "fleet-agent 1.2.0"


@pytest.mark.parametrize(
    "code, out, ok, words",
    [
        (0, "NOKEYS\n", True, "not checked (no trusted keys in /etc/debship/keys)"),
        (0, GOOD, True, "signature good, key D0120DFD06A487C79D1E65AD873120DDF3505EAB"),
        (78, GOOD, False, "gpgv could not verify"),  # status lines alone never pass
        (78, "UNSIGNED\n", False, "it is not signed (no .sig signature beside it)"),
        (78, FOREIGN, False, "signed by key F2A7EF5FC8EB6058, which this host does not trust"),
        (78, BAD, False, "its signature does not match its bytes (altered after signing)"),
        (78, "NOTFOUND\n", False, "the repository has no such package"),
        (1, "", False, "gpgv could not verify its signature (exit 1)"),
        (0, SQV_GOOD, True, "signature good, key 2E2E5DAB6EFDA715577F5514F5A3257082CC7C5B"),
        (78, SQV_FOREIGN, False, "signed by key 2E2E5DAB6EFDA715577F5514F5A3257082CC7C5B, which this host does not"),
        (78, SQV_BAD, False, "its signature does not match its bytes (altered after signing)"),
        (
            78,
            SQV_SHA1,
            False,
            "sqv could not verify its signature (Policy rejected non-revocation signature (Binary) requiring "
            "collision resistance; because: SHA1 is not considered secure since 2013-02-01T00:00:00Z)",
        ),
        (78, "NOVERIFIER\n", False, "the host has neither gpgv nor sqv to check its signature; install one"),
    ],
)
def test_verdict(code, out, ok, words):
    v = verdict(code, out, WHAT)
    assert v.ok is ok and words in v.detail
    if not ok:
        assert v.detail.startswith(f"refused {WHAT}: ") and "\n" not in v.detail


def test_unsafe_report_becomes_one_line_naming_path_kind_and_owner():
    out = "UNSAFE\t/var/lib/debship/x\tsymbolic link\tmallory\tis not a folder\n"
    msg = unsafe_message(out)
    assert msg == (
        "unsafe path on the host: /var/lib/debship/x is not a folder (it is a symbolic link owned by "
        "mallory); ship writes there as root and refuses to follow it: remove it (or give it to root, "
        "mode 0755) and ship again"
    )
    assert unsafe_message("LOCKED\n") is None


def test_an_armored_key_is_stored_binary_and_a_binary_one_as_it_is():
    binary = bytes([0x98, 0x33, 0x04]) + b"\x00" * 40  # a v4 public-key packet header (old format)
    armored = gpg.armored_key(binary, "test key").encode()
    assert dearmor(armored, "k") == binary and dearmor(binary, "k") == binary
    assert TrustedKey(binary).filename.endswith(".gpg") and len(TrustedKey(binary).filename) == 20
    with pytest.raises(DebshipError, match="is not an OpenPGP public key"):
        dearmor(b"hello", "--trust-key k.txt")


def _host_scripts() -> dict:
    from builder import pkgsig
    from builder.ship import commands

    return {
        "lock": commands.HOST_LOCK_SCRIPT,
        "stage": commands.stage("p", "ops")[2],
        "keep": commands.check_and_keep("s", "s/x.deb", "/var/lib/debship/p/x.deb", "0" * 64, "ops", "s/x.sig")[2],
        "verify": pkgsig.VERIFY_SCRIPT,
        "verify-repo": pkgsig.VERIFY_REPO_SCRIPT,
        "trust": pkgsig.trust_command(TrustedKey(b"k"))[2],
    }


@pytest.mark.parametrize("name", sorted(_host_scripts()))
def test_host_security_scripts_pass_shellcheck(name, tmp_path):
    import subprocess

    from tests.harness.helpers import require_tool

    shellcheck = require_tool("shellcheck")
    path = tmp_path / f"{name}.sh"
    path.write_text("#!/bin/sh\n" + _host_scripts()[name])
    proc = subprocess.run([shellcheck, "--shell=sh", "--severity=style", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_pruning_a_kept_package_removes_its_signature_too(tmp_path):
    import subprocess

    from builder.layout import Layout
    from builder.ship import store

    for name in ("a_1_all.deb", "a_1_all.deb.sig", "a_2_all.deb", "a_2_all.deb.sig"):
        (tmp_path / name).write_text("x")
    layout = Layout("a")
    argv = store.prune_command(layout, ["a_1_all.deb"])
    argv[argv.index(layout.store)] = str(tmp_path)  # the same command, on a local folder
    subprocess.run(argv, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_2_all.deb", "a_2_all.deb.sig"]


def test_ship_trust_key_bad_input_is_one_line_and_exit_2(tmp_path):
    from builder.cli import ship
    from tests.harness.helpers import cli_runner

    bad = tmp_path / "team.txt"
    bad.write_text("not a key\n")
    r = cli_runner().invoke(ship, ["--host", "h", "--trust-key", str(bad), "--package", "x", "--list"])
    assert r.exit_code == 2 and r.stderr.startswith("ship: error: --trust-key goes with shipping a package")
    deb = tmp_path / "x_1_all.deb"
    deb.write_bytes(b"!<arch>\n")
    r = cli_runner().invoke(ship, [str(deb), "--host", "h", "--trust-key", str(bad)])
    assert r.exit_code == 2, r.output + r.stderr
    assert r.stderr.strip().splitlines() == [
        f"ship: error: --trust-key {bad} is not an OpenPGP public key; export one with gpg --export KEYID "
        "(or --armor --export)"
    ]
