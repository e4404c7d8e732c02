"""Secrets in a bundle are refused unless listed in allow-secrets (then installed 0600),
and no packaged file is world-writable or setuid whatever its mode in the repository.

Every key here is fake, made at test time: a PEM header around random bytes,
ids of the right shape from random letters.  Nothing real is committed.
"""

from __future__ import annotations

import base64
import json
import random
import string
import tarfile
from pathlib import Path

import pytest

from builder import secrets
from tests.harness.badinput import BUNDLE, builds, refused
from tests.harness.helpers import require_module

RNG = random.Random(11)


def fake_pem(label: str) -> str:
    body = base64.encodebytes(bytes(RNG.getrandbits(8) for _ in range(300))).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def fake_id(prefix: str = "AKIA") -> str:
    return prefix + "".join(RNG.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def fake_secret_key() -> str:
    return "".join(RNG.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))


def service_account() -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "demo",
            "private_key_id": "0" * 40,
            "private_key": fake_pem("PRIVATE KEY"),
            "client_email": "x@demo.iam.gserviceaccount.com",
        }
    )


# (bundle file, contents, kind named in the message)
SECRETS = [
    ("configs/tls/server.key", lambda: fake_pem("RSA PRIVATE KEY"), "a private key"),
    ("configs/tls/server.pem", lambda: "cert first\n" + fake_pem("PRIVATE KEY"), "a private key"),
    ("configs/ec.pem", lambda: fake_pem("EC PRIVATE KEY"), "a private key"),
    ("configs/deploy", lambda: fake_pem("OPENSSH PRIVATE KEY"), "a private key"),
    ("configs/signing.asc", lambda: fake_pem("PGP PRIVATE KEY BLOCK"), "a private key"),
    ("scripts/id_rsa", lambda: "anything\n", "an SSH private key"),
    ("configs/ssh/id_ed25519", lambda: "anything\n", "an SSH private key"),
    ("configs/.env", lambda: "DB_PASSWORD=x\n", "a .env file"),
    ("configs/.env.production", lambda: "DB_PASSWORD=x\n", "a .env file"),
    ("configs/client.p12", lambda: "\0binary", "a key store"),
    ("configs/aws.conf", lambda: f"[default]\naws_access_key_id = {fake_id()}\n", "an AWS access key id"),
    ("scripts/env.sh", lambda: f"export AWS_SECRET_ACCESS_KEY='{fake_secret_key()}'\n", "an AWS secret access key"),
    ("configs/aws.json", lambda: json.dumps({"aws_secret_access_key": fake_secret_key()}), "an AWS secret access key"),
    ("configs/gcp.json", service_account, "a GCP service-account key"),
    (
        "units/demo-svc.service.d/creds.conf",
        lambda: f"[Service]\nEnvironment=AWS_ACCESS_KEY_ID={fake_id('ASIA')}\n",
        "an AWS access key id",
    ),
]


@pytest.mark.parametrize("rel,text,kind", SECRETS, ids=[s[0] for s in SECRETS])
def test_a_secret_in_the_bundle_is_refused(project, rel, text, kind):
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text())
    refused(project, f"{rel}: looks like {kind}", f'allow-secrets = ["{rel}"]', "0600", code=BUNDLE)


@pytest.mark.parametrize(
    "name,text",
    [
        ("ca.pem", fake_pem("CERTIFICATE")),
        ("signing.pub", fake_pem("PUBLIC KEY")),
        ("id_rsa.pub", "ssh-rsa AAAAB3NzaC1yc2E demo\n"),
        (".env.example", "DB_PASSWORD=\n"),
        ("aws-docs.conf", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key =\n"),
        ("blob.bin", "\0" + fake_pem("PRIVATE KEY")),  # binary files are not searched
    ],
    ids=["certificate", "public-key", "ssh-public-key", "env-template", "aws-example-id", "binary"],
)
def test_what_is_not_a_secret_builds(project, name, text):
    (project / "configs" / name).write_text(text)
    builds(project)


def data_members(deb: Path) -> dict[str, tarfile.TarInfo]:
    debfile = require_module("debian.debfile")
    return {m.name.lstrip("./"): m for m in debfile.DebFile(str(deb)).data.tgz().getmembers()}


def test_an_allowed_secret_builds_and_is_installed_0600(project):
    key = project / "configs" / "tls" / "server.key"
    key.parent.mkdir()
    key.write_text(fake_pem("PRIVATE KEY"))
    key.chmod(0o644)
    (project / "debship.toml").write_text(
        (project / "debship.toml").read_text() + 'allow-secrets = ["configs/tls/server.key"]\n'
    )
    members = data_members(builds(project))
    entry = members["etc/demo-svc/tls/server.key"]
    assert (entry.mode, entry.uid, entry.gid) == (0o600, 0, 0)
    assert members["etc/demo-svc/demo.conf"].mode == 0o644


def test_an_allowed_file_is_0600_even_when_not_detected(project):
    (project / "configs" / "token").write_text("just-a-token\n")
    with open(project / "debship.toml", "a") as f:
        f.write('allow-secrets = ["./configs/token"]\n')
    assert data_members(builds(project))["etc/demo-svc/token"].mode == 0o600


def test_no_packaged_file_is_world_writable_or_setuid(project):
    """Modes in the repository are not carried over: 0755 or 0644, no s-bits, no group/other write."""
    (project / "scripts" / "serve.py").chmod(0o6777)  # setuid, setgid, world-writable
    (project / "configs" / "demo.conf").chmod(0o1666)  # sticky, world-writable
    (project / "units" / "demo-svc.service").chmod(0o4775)  # setuid unit: units are never executable
    members = data_members(builds(project))
    assert members["usr/lib/demo-svc/serve.py"].mode == 0o755
    assert members["etc/demo-svc/demo.conf"].mode == 0o644
    assert members["usr/lib/systemd/system/demo-svc.service"].mode == 0o644
    for name, m in members.items():
        assert m.mode & 0o7022 == 0, f"{name} has mode {m.mode:o}"
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "root", "root"), name


def test_only_the_head_of_a_file_is_searched(tmp_path):
    big = tmp_path / "data.txt"
    with open(big, "w") as f:
        f.write("x" * secrets.SCAN_BYTES)
        f.write(fake_pem("PRIVATE KEY"))
    assert secrets.scan(big) is None
    big.write_text(fake_pem("PRIVATE KEY"))
    assert secrets.scan(big) == secrets.Finding(big, "a private key")
