"""The README's quickstart, run as written (the lines between its quickstart markers)
against a loopback SSH host, so that the first screen a newcomer reads cannot drift."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_project

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


def quickstart() -> str:
    """The shell lines of the README's quickstart block."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- quickstart -->\n```sh\n(.*?)```\n<!-- /quickstart -->", text, re.S)
    assert block, "README.md: no ```sh block between <!-- quickstart --> and <!-- /quickstart -->"
    return block.group(1)


def test_the_quickstart_ships_and_rolls_back_as_written(ssh_host, tmp_path):
    work = tmp_path / "work"
    write_project(work / "my-service", MY_SERVICE)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # What a user has already: ssh reaches the host with a key named in ~/.ssh/config.
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n    IdentityFile {ssh_host.key_path}\n")
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env.update(HOME=str(home), HOST=ssh_host.address, DEBFULLNAME="Quick Start", DEBEMAIL="qs@example.com",
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", quickstart()], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dist/my-service_0.1.0_all.deb" in proc.stdout
    assert "1/1 host(s) fine" in proc.stdout                     # debship status
    assert "rolled back 0.2.0 -> 0.1.0" in proc.stdout
    state = ssh_host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "my-service"]).stdout
    assert state.strip() == "ii 0.1.0"
    assert (work / "my-service" / "debship.toml").is_file()
    assert (work / "my-service" / ".github" / "workflows" / "debship.yml").is_file()
