"""The README's quickstart, run as written (the lines between its quickstart markers)
against a loopback SSH host, so that the first screen a newcomer reads cannot drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builder.build import build_deb
from tests.harness.project import REPO, copy_sample, write_project

pytestmark = pytest.mark.root

MY_SERVICE = {
    "units/my-service.service": """
        [Unit]
        Description=my service

        [Service]
        ExecStart=/usr/bin/python3 /usr/lib/my-service/serve.py
        Restart=on-failure

        [Install]
        WantedBy=multi-user.target
    """,
    "scripts/serve.py": """
        #!/usr/bin/python3
        import time
        while True:
            time.sleep(60)
    """,
    "configs/my-service.conf": """
        # settings
        port = 8080
    """,
}


def quickstart(marker: str = "quickstart") -> str:
    """The shell lines of the README's block between <!-- MARKER --> and <!-- /MARKER -->."""
    text = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```\n<!-- /{marker} -->", text, re.S)
    assert block, f"README.md: no ```sh block between <!-- {marker} --> and <!-- /{marker} -->"
    assert text.index(f"<!-- /{marker} -->") < len("\n".join(text.splitlines()[:60])), "not on the first screen"
    return block.group(1)


def run_as_user(script: str, cwd: Path, host, tmp_path: Path) -> subprocess.CompletedProcess:
    """``script`` in bash as a user whose ~/.ssh/config names the key that reaches ``host``."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n    IdentityFile {host.key_path}\n")
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env.update(
        HOME=str(home),
        HOST=host.address,
        DEBFULLNAME="Quick Start",
        DEBEMAIL="qs@example.com",
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_sample_ships_as_written(ssh_host, tmp_path):
    checkout = copy_sample(tmp_path / "debship")  # what tools/setup.sh leaves: the sample in dist/
    build_deb(checkout, checkout / "dist")
    proc = run_as_user(quickstart("quickstart:sample"), checkout, ssh_host, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1/1 host(s) at fleet-agent 1.0.0" in proc.stdout


def test_the_quickstart_ships_and_rolls_back_as_written(ssh_host, tmp_path):
    work = tmp_path / "work"
    write_project(work / "my-service", MY_SERVICE)
    proc = run_as_user(quickstart(), work, ssh_host, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dist/my-service_0.1.0_all.deb" in proc.stdout
    assert "1/1 host(s) fine" in proc.stdout  # debship status
    assert "rolled back 0.2.0 -> 0.1.0" in proc.stdout
    state = ssh_host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "my-service"]).stdout
    assert state.strip() == "ii 0.1.0"
    assert (work / "my-service" / "debship.toml").is_file()
    assert (work / "my-service" / ".github" / "workflows" / "debship.yml").is_file()
