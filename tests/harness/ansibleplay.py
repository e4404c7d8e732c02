"""Running ansible-core (from PyPI, in the venv) against test hosts over real SSH, with the
collection in ansible/ on its path: an inventory of the hosts, a playbook, the output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.harness.helpers import _missing
from tests.harness.project import REPO

COLLECTIONS = REPO / "ansible"


def ansible_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        _missing(f"{name} (pip install ansible-core)")
    return str(path)


def run_playbook(tmp_path: Path, hosts, playbook: str, host_vars: list[str], *args: str) -> subprocess.CompletedProcess:
    """``playbook`` on group ``fleet``: host i is ``h<i>`` with ``host_vars[i]`` (``k=v ...``)."""
    inventory = tmp_path / "inventory.ini"
    lines = ["[fleet]"]
    for i, h in enumerate(hosts):
        lines.append(f"h{i} ansible_host=127.0.0.1 ansible_port={h.port} {host_vars[i]}".rstrip())
    key = hosts[0].ship_args()[1]
    lines += [
        "[fleet:vars]",
        "ansible_user=ops",
        f"ansible_ssh_private_key_file={key}",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    inventory.write_text("\n".join(lines) + "\n")
    play = tmp_path / "play.yml"
    play.write_text(playbook)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": "-o UserKnownHostsFile=/dev/null -o ControlMaster=no",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_FORKS": "4",
        "SSH_AUTH_SOCK": "",
    }
    return subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", str(inventory), str(play), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counters by host."""
    rows = {}
    for m in re.finditer(r"^(h\d)\s+:\s+(.*)$", output, re.M):
        rows[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return rows


def failed_result(output: str, host: str) -> dict:
    """The result Ansible prints for a failed task of ``host`` (``fatal: [h0]: FAILED! => {...}``)."""
    m = re.search(rf"^fatal: \[{re.escape(host)}\]: FAILED! => (\{{.*\}})$", output, re.M)
    assert m, output
    return json.loads(m.group(1))
