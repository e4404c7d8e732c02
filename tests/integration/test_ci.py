"""docs/ci.md's GitHub Actions workflow and GitLab CI job: the docs show exactly what
`debship init` writes, both parse as YAML and run the same shell steps, and those steps run
in a clean Debian root (chroot, no network): install debship, build, diff against the last
release in the repository, publish; twice, as two tagged releases would."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.init import CI_SCRIPT, ci_workflow
from tests.harness.aptrepo import gen_key
from tests.harness.helpers import require_tool
from tests.harness.project import REPO, write_project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.root

# A clean Debian 12 with what the CI jobs install (python3-venv, gnupg) and, because tests have
# no network, Debian's builds of debship's libraries for pip to find instead of PyPI's;
# python3-yaml reads the two workflow files.
CI_ROOT_PACKAGES = (
    "python3",
    "python3-venv",
    "gnupg",
    "python3-click",
    "python3-jinja2",
    "python3-debian",
    "python3-paramiko",
    "python3-yaml",
)

PROJECT = {
    "units/my-service.service": """
        [Unit]
        Description=my service

        [Service]
        ExecStart=/usr/bin/python3 /usr/lib/my-service/serve.py

        [Install]
        WantedBy=multi-user.target
    """,
    "scripts/serve.py": "#!/usr/bin/python3\nprint('serving')\n",
    "configs/my-service.conf": "port = 8080\n",
}


def fenced(markdown: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", markdown, re.S)


def test_the_docs_show_what_init_writes():
    docs = (REPO / "docs" / "ci.md").read_text()
    blocks = fenced(docs, "yaml")
    assert ci_workflow("github", "my-service") in blocks
    assert ci_workflow("gitlab", "my-service") in blocks


def wheel(dest: Path) -> Path:
    """debship's wheel, made from this checkout (builder/ and the templates) as setuptools lays
    it out; made here because building one with setuptools needs PyPI, and tests have no network."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    version = meta["version"]
    info = f"debship-{version}.dist-info"
    files = {f"builder/{p.name}": p.read_bytes() for p in sorted((REPO / "builder").glob("*.py"))}
    files |= {f"builder/templates/{p.name}": p.read_bytes() for p in sorted((REPO / "debian").glob("*.j2"))}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: debship\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = (
        "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in meta["scripts"].items())
    ).encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    files[f"{info}/RECORD"] = record.getvalue().encode()
    path = dest / f"debship-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def ci_root():
    from tests.harness.fixtures import require_root_host

    require_root_host()
    from hostlab.rootfs import cached_root

    return cached_root(CI_ROOT_PACKAGES)


def test_the_ci_steps_build_diff_and_publish_in_a_clean_debian_root(ci_root, tmp_path, monkeypatch):
    require_tool("gpg")
    from hostlab.rootfs import Root

    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    key_id = gen_key("CI signing <ci@example.com>")
    secret = subprocess.run(
        ["gpg", "--batch", "--armor", "--export-secret-keys", key_id], check=True, capture_output=True, text=True
    ).stdout
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True)

    with Root(ci_root, workdir=tmp_path) as root:
        work = root.path / "work"
        project = write_project(work / "my-service", PROJECT)
        (project / "debship.toml").write_text(
            'name = "my-service"\nversion = "0.0.0"\n'
            'maintainer = "CI <ci@example.com>"\ndescription = "my service"\n'
            'depends = ["python3"]\n'
        )
        whl = wheel(work)
        for kind in ("github", "gitlab"):
            (work / f"{kind}.yml").write_text(ci_workflow(kind, "my-service"))
        read = (
            "import yaml; g = yaml.safe_load(open('/work/github.yml')); l = yaml.safe_load(open('/work/gitlab.yml'));"
            "print(next(s['run'] for s in g['jobs']['package']['steps'] if 'run' in s) == l['debship']['script'][0])"
        )
        assert root.run(["python3", "-c", read]).stdout.strip() == "True"

        # What the runner has before the job's own steps: a venv that sees Debian's libraries (no PyPI here).
        root.run(["python3", "-m", "venv", "--system-site-packages", "/work/my-service/.debship-venv"])
        env = {
            "PACKAGE": "my-service",
            "DEBSHIP_INSTALL": f"/work/{whl.name}",
            "DEBSHIP_SIGNING_KEY": secret,
            "DEBSHIP_SIGNING_KEY_ID": key_id,
            "GNUPGHOME": "/work/gnupg",
            "PIP_NO_INDEX": "1",
            "PIP_NO_DEPS": "1",
            "SOURCE_DATE_EPOCH": "1767225600",
        }
        (work / "gnupg").mkdir(mode=0o700)
        job = ["sh", "-c", 'cd /work/my-service && exec bash -c "$0"', CI_SCRIPT]

        first = root.run(job, env={**env, "RELEASE": "v0.1.0"}, offline=True, check=False)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "first release: nothing to diff" in first.stdout
        assert "stable/main: 1 package(s), signed" in first.stdout

        conf = project / "configs" / "my-service.conf"
        conf.write_text("port = 9090\n")
        second = root.run(job, env={**env, "RELEASE": "v0.2.0"}, offline=True, check=False)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "0.1.0" in second.stdout and "0.2.0" in second.stdout  # the diff's header
        assert "/etc/my-service/my-service.conf" in second.stdout  # the changed conffile
        assert "stable/main: 2 package(s), signed" in second.stdout

        repo = project / "repo"
        pool = sorted(p.name for p in repo.glob("pool/main/m/my-service/*.deb"))
        assert pool == ["my-service_0.1.0_all.deb", "my-service_0.2.0_all.deb"]
        verify = subprocess.run(
            ["gpg", "--batch", "--verify", str(repo / "dists/stable/InRelease")], capture_output=True, text=True
        )
        assert verify.returncode == 0, verify.stderr
        assert json.loads((project / "build.json").read_text())["version"] == "0.2.0"
