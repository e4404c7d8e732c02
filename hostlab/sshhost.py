"""A loopback SSH test host: real sshd serving a throwaway Debian root on 127.0.0.1.

``SSHHost(root)`` takes a ``rootfs.Root`` (a writable overlay of the cached
bookworm root), adds a user ``ops`` with a fresh ed25519 key and passwordless
sudo, makes host keys and starts ``/usr/sbin/sshd -D -e`` chrooted into the
root, inside a private mount and PID namespace::

    unshare --mount --pid --fork --kill-child --mount-proc=<root>/proc \
        sh -c '<private /dev>; exec chroot <root> /usr/sbin/sshd -D -e -f ...'

sshd is PID 1 of that namespace: killing it kills every process of the host
at once (sessions, sudo, whatever a test started), and the namespace's mounts
(/proc, the private /dev) go with it.  ``unshare`` itself dies with the test
process (PR_SET_PDEATHSIG) and takes sshd with it (--kill-child), so even a
killed pytest leaves no sshd behind.  Needs root, like ``Root``.

    with Root(cached_root()) as root, SSHHost(root) as host:
        with host.connect() as conn:          # builder.ship.ssh.SSHConnection
            conn.run(["id"])
        host.run_root(["cat", "/etc/hostname"])  # chrooted, as root, no SSH
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .client import ClientSide
from .rootfs import Root

SSHD_CONFIG = "/etc/ssh/debship_test_sshd_config"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

# Runs as PID 1 of the new namespaces: a private /dev (device nodes only, no host
# disks), then sshd replaces the shell, so sshd is the namespace's init.
_START = r"""
set -e
R="$0"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    mknod -m 0666 "$R/dev/${n%%:*}" c $(echo "${n#*:}" | tr : ' ')
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mkdir -p "$R/run/sshd"
sleep "$1"
exec chroot "$R" /usr/sbin/sshd -D -e -f "$2"
"""

_SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile /run/sshd.pid
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowTcpForwarding yes
UseDNS no
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SSHHost(ClientSide):
    """sshd on 127.0.0.1:``port`` serving ``root``; user ``ops`` logs in with ``key_path``."""

    def __init__(
        self,
        root: Root,
        workdir: Path | None = None,
        *,
        start_delay: float = 0.0,
        sudo_password: bool = False,
        start: bool = True,
    ):
        self.root, self.start_delay, self.sudo_password = root, start_delay, sudo_password
        self.dir = Path(tempfile.mkdtemp(prefix="debship-ssh-", dir=workdir))
        self.port = free_port()
        self.log_path = self.dir / "sshd.log"
        self._proc: subprocess.Popen | None = None
        self._open(start)

    # -- what tests use -------------------------------------------------------------

    @property
    def host_key_line(self) -> str:
        """The host's public key as ``ssh-ed25519 AAAA...`` (no comment)."""
        return " ".join((self.root.path / (HOST_KEY[1:] + ".pub")).read_text().split()[:2])

    @property
    def known_hosts_line(self) -> str:
        """The line OpenSSH would write to known_hosts for this host."""
        return f"[127.0.0.1]:{self.port} {self.host_key_line}\n"

    def run_root(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` chrooted into the host as root, without SSH (for setup and assertions)."""
        return self.root.run(argv, check=check, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, delay: float | None = None, wait: bool | None = None) -> None:
        """Start sshd; it listens after ``delay`` s (default ``start_delay``); waits for it when delay is 0."""
        if self.running:
            return
        delay = self.start_delay if delay is None else delay
        argv = [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            f"--mount-proc={self.root.path}/proc",
            "sh",
            "-c",
            _START,
            str(self.root.path),
            str(delay),
            SSHD_CONFIG,
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_ENV,
                preexec_fn=_die_with_parent,
            )
        if wait if wait is not None else delay == 0:
            self.wait_listening()

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if not self.running or time.monotonic() > deadline:
                tail = self.log()[-2000:]
                self.stop()
                raise RuntimeError(f"sshd on port {self.port} did not come up; its log:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the namespace's init (sshd): the kernel kills every other process in it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            for pid in children(proc.pid) or [proc.pid]:
                _kill(pid)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(proc.pid)  # --kill-child: the init dies with unshare
                proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, delay: float | None = None) -> None:
        self.stop()
        self.start(delay)

    def rotate_host_key(self) -> None:
        """A new host key, as a rebuilt instance has; restarts sshd if it runs."""
        for suffix in ("", ".pub"):
            (self.root.path / (HOST_KEY[1:] + suffix)).unlink(missing_ok=True)
        self.run_root(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", HOST_KEY])
        if self.running:
            self.restart()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- setup --------------------------------------------------------------------
    def _provision(self) -> None:
        p = self.root.path
        self.client_files(self.dir)
        self.add_user(self.root, HOST_KEY, self.sudo_password)
        with open(p / "etc" / "hosts", "a") as hosts:  # sudo resolves the (shared) host name
            hosts.write(f"127.0.1.1 {socket.gethostname()}\n")
        (p / SSHD_CONFIG[1:]).write_text(_SSHD_CONFIG.format(port=self.port, host_key=HOST_KEY))


def children(pid: int) -> list[int]:
    """The process's children, from /proc (none once it is gone)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
