"""The three ways bench/ship.py installs a .deb on N hosts, each as the command a user would type.

Each ``*_command`` writes its inventory/playbook into ``run_dir`` and returns (argv, env).
The settings are the ones docs/performance.md lists; change them there too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hostlab.sshhost import SSHHost

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".venv-bench" / "bin"
REMOTE_DEB = "/var/tmp/bench.deb"


@dataclass(frozen=True)
class Run:
    seconds: float
    output: str
    cpu: float = 0.0  # user + sys seconds of the tool's process and every process it waited for
    peak_rss: int = 0  # KiB: the highest sum of RSS over the tool's process tree (sampled every 0.1 s)


def run_timed(argv: list[str], env: dict, cwd: Path, who: str) -> Run:
    """Run one tool to the end; a non-zero exit stops the bench with the tool's last lines."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak = [0]
    done = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, peak, done), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # the rusage of the tool and the children it reaped
    took = time.perf_counter() - t0
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    sampler.join()
    output = out[0] if out else ""
    (cwd / "output.txt").write_text(output)
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise SystemExit(f"{who} failed (exit {proc.returncode}); its last lines:\n{tail}")
    return Run(took, output, usage.ru_utime + usage.ru_stime, peak[0])


def _sample_rss(pid: int, peak: list, done: threading.Event) -> None:
    """Keep in peak[0] the largest sum of VmRSS (KiB) over ``pid`` and its descendants."""
    while not done.wait(0.1):
        parents, rss = {}, {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            parents[int(entry.name)] = int(fields.get("PPid", "0"))
            rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
        tree, grown = {pid}, True
        while grown:
            more = {p for p, parent in parents.items() if parent in tree} - tree
            tree |= more
            grown = bool(more)
        peak[0] = max(peak[0], sum(rss.get(p, 0) for p in tree))


def debship_command(deb: Path, hosts: list[SSHHost], run_dir: Path) -> tuple[list[str], dict]:
    """`debship ship` (through bench/_counted.py, which records the round trips in trips.json)."""
    first = hosts[0]
    argv = [
        sys.executable,
        str(REPO / "bench" / "_counted.py"),
        str(run_dir / "trips.json"),
        "ship",
        str(deb),
        "-i",
        str(first.key_path),
        "--known-hosts",
        str(run_dir / "known_hosts"),
        "--ssh-config",
        str(first.ssh_config),
        "--parallel",
        str(len(hosts)),
        "--json",
    ]
    for h in hosts:
        argv += ["--host", h.address]
    return argv, {}


def ansible_command(deb: Path, hosts: list[SSHHost], run_dir: Path, gather_facts: bool) -> tuple[list[str], dict]:
    """ansible-playbook: copy the .deb, then `apt: deb=` it; pipelining on, forks = hosts."""
    lines = ["[fleet]"] + [f"h{i} ansible_host=127.0.0.1 ansible_port={h.port}" for i, h in enumerate(hosts)]
    lines += [
        "[fleet:vars]",
        "ansible_user=ops",
        f"ansible_ssh_private_key_file={hosts[0].key_path}",
        f"ansible_ssh_common_args='-F {hosts[0].ssh_config} -o UserKnownHostsFile=/dev/null'",
    ]
    (run_dir / "inventory.ini").write_text("\n".join(lines) + "\n")
    (run_dir / "play.yml").write_text(f"""\
- hosts: fleet
  become: true
  gather_facts: {str(gather_facts).lower()}
  tasks:
    - name: upload the package
      ansible.builtin.copy: {{src: "{deb}", dest: "{REMOTE_DEB}", mode: "0644"}}
    - name: install it
      ansible.builtin.apt: {{deb: "{REMOTE_DEB}"}}
""")
    env = {
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(len(hosts)),
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_dir / "cp"),
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
    }
    return [str(BENCH_VENV / "ansible-playbook"), "-i", "inventory.ini", "play.yml"], env


def ansible_debship_command(deb: Path, hosts: list[SSHHost], run_dir: Path) -> tuple[list[str], dict]:
    """ansible-playbook with the debship.fleet.apply module (ansible/): copy the .deb, then
    `debship apply` it on each host (debship's checks, rollback, record, pin); debship is put
    into each host first, outside the timing (tests/integration/test_apply.py's install_debship)."""
    from tests.harness.applying import install_debship

    for h in hosts:
        install_debship(h)
    argv, env = ansible_command(deb, hosts, run_dir, False)
    (run_dir / "play.yml").write_text(f"""\
- hosts: fleet
  become: true
  gather_facts: false
  tasks:
    - name: upload the package
      ansible.builtin.copy: {{src: "{deb}", dest: "{REMOTE_DEB}", mode: "0644"}}
    - name: install it with debship's checks
      debship.fleet.apply: {{deb: "{REMOTE_DEB}"}}
""")
    return argv, {**env, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "ansible")}


def pyinfra_command(deb: Path, hosts: list[SSHHost], run_dir: Path) -> tuple[list[str], dict]:
    """pyinfra: `files.put` then `apt.deb`, --sudo, -y, --parallel = hosts."""
    data = {
        "ssh_hostname": "127.0.0.1",
        "ssh_user": "ops",
        "ssh_key": str(hosts[0].key_path),
        "ssh_config_file": str(hosts[0].ssh_config),
        "ssh_known_hosts_file": str(run_dir / "known_hosts"),
        "ssh_strict_host_key_checking": "off",
    }
    (run_dir / "known_hosts").touch()
    entries = [(f"h{i}", {**data, "ssh_port": h.port}) for i, h in enumerate(hosts)]
    (run_dir / "inventory.py").write_text(f"hosts = {entries!r}\n")
    (run_dir / "deploy.py").write_text(f"""\
from pyinfra.operations import apt, files

files.put(name="upload the package", src={str(deb)!r}, dest={REMOTE_DEB!r}, mode="644")
apt.deb(name="install it", src={REMOTE_DEB!r})
""")
    argv = [str(BENCH_VENV / "pyinfra"), "inventory.py", "deploy.py", "--sudo", "-y", "--parallel", str(len(hosts))]
    return argv, {}


def versions() -> dict[str, str]:
    """The rival tools' versions, as their own --version prints them."""
    out = {}
    for name, argv in (("ansible-core", ["ansible-playbook", "--version"]), ("pyinfra", ["pyinfra", "--version"])):
        r = subprocess.run([str(BENCH_VENV / argv[0]), *argv[1:]], capture_output=True, text=True)
        out[name] = r.stdout.splitlines()[0].strip() if r.returncode == 0 and r.stdout else "missing"
    return out
