"""A booted test host: systemd as PID 1 in a ``systemd-nspawn`` container of a cached Debian root.

Where ``sshhost.SSHHost`` serves a chroot with no init, ``NspawnHost`` boots the
guest for real, so services run, ``systemctl`` answers and a reboot reboots::

    with Root(cached_root(BOOT_PACKAGES)) as root, NspawnHost(root) as host:
        host.run_root(["systemctl", "is-system-running", "--wait"])   # inside, as root, no SSH
        with host.connect() as conn:                                  # builder.ship.ssh.SSHConnection
            conn.run(["id"])

The guest root is ``rootfs.cached_root(BOOT_PACKAGES)`` (mmdebstrap, cached by
package list; Debian 12, or 13 with ``suite="trixie"``: the same packages boot
systemd 257 there), used through a ``rootfs.Root`` overlay.  Before the first boot
the overlay gets per-host state: a machine-id and host name, user ``ops`` with a
fresh ed25519 key and passwordless sudo, an sshd host key, and an sshd drop-in
that listens on its own port on 127.0.0.1 only (the container shares the host's
network namespace).  Units that make no sense in a container, or that would
reach the network on their own (apt's daily timers), are masked.

A supervisor thread runs ``systemd-nspawn --register=no --keep-unit -b`` as a
child it ``wait()``s for.  ``systemctl reboot`` inside makes nspawn exit 133:
the supervisor starts it again on the same overlay, so state on disk survives
and the boot id changes, as on a real machine; any other exit ends the host.
``run_root()`` enters the guest's namespaces with ``nsenter`` (root, no SSH).

``close()`` powers the guest off (SIGTERM to nspawn = SIGRTMIN+3 to the guest's
systemd), SIGKILLs what is left after a grace period, and checks that the
guest's init is gone.  nspawn runs as PID 1 of a PID namespace made by
``unshare --pid --fork --kill-child``, and unshare dies with the thread that
started it (PR_SET_PDEATHSIG): a killed pytest kills unshare, unshare kills
nspawn, and with nspawn the kernel kills every process of the guest (a guest's
systemd outlives a plain killed nspawn).  Needs root.

One difference from a VM: a unit with ProtectKernelTunables= or
ProtectControlGroups= gets a fresh /proc/sys without nspawn's fake boot id and
reads the *host's* boot id, the same at every guest boot (systemd issues
#28059, #40135); ``boot_id()`` is PID 1's view, which does change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .client import ClientSide
from .rootfs import ROOT_PACKAGES, Root
from .sshhost import _die_with_parent, _kill, children, free_port

# What booting needs on top of the chroot root: /sbin/init, the system bus (systemctl
# as a user, logind) and PAM sessions.  No cloud-init: ship then waits on
# `systemctl is-system-running --wait`.
BOOT_PACKAGES = tuple(sorted(set(ROOT_PACKAGES) | {"systemd-sysv", "dbus", "libpam-systemd"}))
# A cloud instance: cloud-init reads a NoCloud seed at first boot (its apt module needs gpg
# to turn a key into a keyring).
CLOUD_PACKAGES = tuple(sorted(set(BOOT_PACKAGES) | {"cloud-init", "gpg"}))

# cloud-init in a container sharing the host network: NoCloud only, no network set-up.
_CLOUD_CFG = """\
datasource_list: [NoCloud]
network: {config: disabled}
locale: C.UTF-8
"""

REBOOT_EXIT = 133  # systemd-nspawn's exit status when the container asked for a reboot
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/debship-test.conf"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

# Pointless or harmful in a container that shares the host's network: consoles,
# network set-up, and timers that would start apt (network, dpkg lock) mid-test.
MASKED = (
    "console-getty.service",
    "getty@tty1.service",
    "serial-getty@.service",
    "networking.service",
    "systemd-networkd-wait-online.service",
    "systemd-networkd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "systemd-pstore.service",
)

_SSHD_DROPIN = """\
# debship tests: sshd on its own loopback port (the container shares the host network)
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
"""


@dataclasses.dataclass
class Boot:
    """One run of systemd-nspawn: when it started, when sshd answered, how it ended."""

    pid: int
    started: float  # time.monotonic()
    ssh_after: float | None = None  # s from start until sshd sent its banner
    exit_code: int | None = None


class NspawnHost(ClientSide):
    """A booted container of ``root``; sshd on 127.0.0.1:``port``, user ``ops`` logs in with ``key_path``."""

    def __init__(
        self,
        root: Root,
        workdir: Path | None = None,
        *,
        boot_timeout: float = 60.0,
        start: bool = True,
        user_data: str | None = None,
    ):
        self.root, self.boot_timeout, self.user_data = root, boot_timeout, user_data
        self.dir = Path(tempfile.mkdtemp(prefix="debship-nspawn-", dir=workdir))
        self.port = free_port()
        self.machine = f"debship-{self.port}"
        self.console_path = self.dir / "console.log"
        self.boots: list[Boot] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._open(start)

    # -- what tests use (the same surface as SSHHost) -----------------------------------

    def run_root(
        self, argv: list[str], check: bool = True, timeout: float = 120.0, **kw
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the booted container as root (its namespaces, its root), without SSH."""
        leader = self.leader()
        return subprocess.run(
            ["nsenter", "--target", str(leader), "--all", "--root", "--wd", "--", *argv],
            check=check,
            env=_ENV,
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            **kw,
        )

    def boot_id(self) -> str:
        """The guest's boot id as its PID 1 (and ship, over SSH) sees it: new at every boot."""
        return self.run_root(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()

    def console(self) -> str:
        """What the guest printed on its console, every boot (for failure messages)."""
        text = self.console_path.read_text(errors="replace") if self.console_path.exists() else ""
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "")

    @property
    def reboots(self) -> int:
        """How many times the guest rebooted itself (nspawn exited 133 and was started again)."""
        return sum(b.exit_code == REBOOT_EXIT for b in self.boots)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def leader(self, timeout: float = 60.0) -> int:
        """The host-side PID of the guest's PID 1 (systemd), waiting through a reboot."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                pid = _guest_init(proc.pid)
                if pid is not None:
                    return pid
            if not self.running or time.monotonic() > deadline:
                raise RuntimeError(f"container {self.machine} is not running; its console:\n{self.console()[-3000:]}")
            time.sleep(0.05)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Boot the container and wait until sshd answers (raises with the console's tail if not)."""
        if self.running:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._supervise, name=self.machine, daemon=True)
        self._thread.start()
        self.wait_ssh()

    def wait_ssh(self, timeout: float | None = None) -> float:
        """Wait until the current boot's sshd sends its banner; returns the boot-to-SSH seconds."""
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        while True:
            boot = self.boots[-1] if self.boots else None
            if boot is not None and boot.ssh_after is not None and boot.exit_code is None:
                return boot.ssh_after
            if (boot is not None and not self.running) or time.monotonic() > deadline:
                tail = self.console()[-3000:]
                self.stop()
                raise RuntimeError(
                    f"container {self.machine}: no sshd on 127.0.0.1:{self.port} "
                    f"after {time.monotonic() - (boot.started if boot else 0):.0f} s; "
                    f"its console:\n{tail}"
                )
            time.sleep(0.05)

    def _supervise(self) -> None:
        """Run nspawn until it exits other than for a reboot, or until ``stop()``."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._proc = self._spawn()
                boot = Boot(self._proc.pid, time.monotonic())
                self.boots.append(boot)
            proc = self._proc
            while proc.poll() is None and boot.ssh_after is None:
                if _ssh_banner(self.port):
                    boot.ssh_after = round(time.monotonic() - boot.started, 2)
                else:
                    time.sleep(0.05)
            boot.exit_code = proc.wait()
            if boot.exit_code != REBOOT_EXIT:
                return

    def _spawn(self) -> subprocess.Popen:
        # nspawn as PID 1 of a PID namespace of its own: when it dies (with the thread that
        # started it, or killed), the kernel kills the whole namespace, guest included
        # (the guest's systemd would survive a killed nspawn otherwise).
        argv = [
            "unshare",
            "--pid",
            "--mount",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--boot",
            "--directory",
            str(self.root.path),
            "--machine",
            self.machine,
            "--console=read-only",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
        ]
        with open(self.console_path, "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_ENV,
                preexec_fn=_die_with_parent,
            )

    def stop(self, grace: float = 15.0) -> None:
        """Power the guest off (SIGTERM to nspawn), SIGKILL it after ``grace`` s; no process survives."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            nspawn = children(proc.pid)[:1]
            init = _guest_init(proc.pid)
            for pid in nspawn or [proc.pid]:
                _signal(pid, signal.SIGTERM)  # nspawn: SIGRTMIN+3 to the guest's systemd = poweroff
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                for pid in nspawn:
                    _kill(pid)  # init of the outer PID namespace: the kernel kills everything in it
                _kill(proc.pid)
                proc.wait(timeout=10)
            _wait_gone(init)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # nspawn's, left behind only when nspawn was killed
            os.rmdir(f"/run/systemd/nspawn/propagate/{self.machine}")

    # -- set-up, on the overlay, before the first boot -------------------------------
    def _provision(self) -> None:
        p = self.root.path
        self.client_files(self.dir)
        (p / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        (p / "etc/hostname").write_text(self.machine + "\n")
        with open(p / "etc/hosts", "a") as hosts:  # sudo resolves the host name
            hosts.write(f"127.0.1.1 {self.machine}\n")
        self.add_user(self.root, HOST_KEY)
        dropin = p / SSHD_DROPIN[1:]
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(_SSHD_DROPIN.format(port=self.port, host_key=HOST_KEY))
        if self.user_data is not None:
            self._seed(self.user_data)
        units = p / "etc/systemd/system"
        for unit in MASKED:
            link = units / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")

    def _seed(self, user_data: str) -> None:
        """A NoCloud seed (cloud-init runs it at first boot); apt has no source but the seed's."""
        p = self.root.path
        seed = p / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "meta-data").write_text(f"instance-id: {self.machine}\nlocal-hostname: {self.machine}\n")
        (seed / "user-data").write_text(user_data)
        (p / "etc/cloud/cloud.cfg.d/99-debship-test.cfg").write_text(_CLOUD_CFG)
        (p / "etc/default/locale").write_text("LANG=C.UTF-8\n")  # else cloud-init's locale module fails
        for sources in (p / "etc/apt/sources.list", p / "etc/apt/sources.list.d/debian.sources"):
            if sources.exists():
                sources.write_text("")


def _guest_init(unshare_pid: int) -> int | None:
    """The guest's init: the child of systemd-nspawn (itself unshare's child) that is PID 1 of its namespace."""
    for child in [c for nspawn in children(unshare_pid)[:1] for c in children(nspawn)]:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        nspid = next((l.split()[1:] for l in status.splitlines() if l.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == "1":
            return int(child)
    return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _wait_gone(pid: int | None, timeout: float = 10.0) -> None:
    """Wait until ``pid`` (the guest's init) is gone or a zombie; SIGKILL it if it lingers."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            _kill(pid)
            if time.monotonic() > deadline + timeout:
                raise RuntimeError(f"the container's init (pid {pid}) survived SIGKILL")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running, not a zombie (orphans may never be reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
