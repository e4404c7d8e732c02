"""A real guest for the tests and ``make demo``: Debian 12 under qemu, booted like a cloud instance.

``cached_image()`` builds a bookworm guest from Debian packages only
(mmdebstrap: systemd, sshd, cloud-init, the cloud kernel …), writes it into an
ext4 image with ``mkfs.ext4 -d`` converted to qcow2, and copies the kernel and
initrd out of it for direct boot.  It is cached under ``$DEBSHIP_CACHE``
(default ``~/.cache/debship``) in ``vm/<key>/``, keyed by the package list and
the way images are made, built in a temp folder and renamed into place.

``VMGuest`` boots that image the way a cloud instance boots: a throwaway qcow2
overlay, a NoCloud seed (a ``cidata`` ISO made by ``cloud-localds``) whose
user-data creates user ``ops`` with a fresh ed25519 key and passwordless sudo,
user-mode networking forwarding a free loopback port to the guest's port 22::

    with VMGuest() as vm:                       # qemu starts; nothing is waited for
        vm.wait_ssh()                           # optional: ship waits by itself
        vm.run(["cloud-init", "status", "--wait"])
        vm.run(["systemctl", "is-system-running"], sudo=True)

The guest runs under KVM when KVM really works here and under TCG (software
emulation) otherwise: ``accelerator()`` boots the guest's kernel once under KVM
and watches for it to reach its initramfs; a missing, unusable or misbehaving
``/dev/kvm`` means TCG.  ``DEBSHIP_VM_ACCEL=kvm|tcg`` forces a choice.

qemu is a child process this one waits for (no ``-daemonize``), started with
PR_SET_PDEATHSIG so a killed test run kills it too.  A reboot inside the guest
restarts it in the same qemu process (no ``-no-reboot``); a watcher thread
follows the serial console and records each boot in ``boots`` (when its kernel
started, how long until sshd answered).  ``console_log()`` is the serial console
of every boot, for failure messages.  ``shutdown()`` powers the guest off from
inside; ``close()`` kills qemu and deletes the overlay, seed and key.  Needs root only to build the
image (mmdebstrap, files owned by root); booting needs qemu-system-x86,
qemu-utils and cloud-image-utils.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from builder.errors import RemoteError
from builder.ship.connection import Result
from builder.ship.ssh import SSHConnection

from .client import ClientSide
from .rootfs import cache_dir
from .sshhost import _die_with_parent, free_port

SUITE = "bookworm"
# A small cloud instance: what Debian's genericcloud image has that matters to
# ship (systemd, sshd, cloud-init, sudo, apt, python3 for startup.py), the cloud
# kernel, ifupdown + a DHCP client for cloud-init's fallback network config,
# e2fsprogs for cloud-init's resizefs, curl for checks from inside the guest.
GUEST_PACKAGES = (
    "cloud-init",
    "curl",
    "dbus",
    "e2fsprogs",
    "ifupdown",
    "iproute2",
    "isc-dhcp-client",
    "libpam-systemd",
    "linux-image-cloud-amd64",
    "netbase",
    "openssh-server",
    "procps",
    "python3",
    "sudo",
    "systemd",
    "systemd-sysv",
    "udev",
)
_LAYOUT = "1"  # bump when the way images are made changes
IMAGE_SIZE = "3G"  # the guest's root file system (sparse; the qcow2 holds only what is used)
ROOT_LABEL = "debship-root"
KERNEL_APPEND = "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 panic=-1"

# Run by mmdebstrap with "$1" = the new root.  Facts measured on this kind of guest:
# cloud-init's locale module needs LANG set (no `locales` package is installed), ifupdown
# reads cloud-init's DHCP config only through the `source` line, NoCloud is the only
# datasource worth probing, host keys and machine-id must be made at first boot.
_CUSTOMIZE = r"""
set -e
R="$1"
rm -f "$R"/etc/ssh/ssh_host_*
printf 'LANG=C.UTF-8\n' > "$R/etc/default/locale"
printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' > "$R/etc/network/interfaces"
mkdir -p "$R/etc/network/interfaces.d"
printf 'datasource_list: [ NoCloud, None ]\n' > "$R/etc/cloud/cloud.cfg.d/90-debship-datasource.cfg"
printf 'LABEL=%(label)s / ext4 defaults,errors=remount-ro 0 1\n' > "$R/etc/fstab"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
printf 'localhost\n' > "$R/etc/hostname"
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
"""

_USER_DATA = """\
#cloud-config
locale: C.UTF-8
manage_etc_hosts: true
ssh_pwauth: false
users:
  - name: {user}
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - {key}
"""


# --- the image ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Image:
    """A cached guest image: the qcow2 to put overlays on, and the kernel and initrd to boot."""

    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    def info(self) -> dict:
        return json.loads((self.dir / "image.json").read_text())


def image_key(packages: Sequence[str] = GUEST_PACKAGES) -> str:
    text = "\n".join([_LAYOUT, SUITE, "apt", IMAGE_SIZE, _CUSTOMIZE, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_image(packages: Sequence[str] = GUEST_PACKAGES, log: Callable[[str], None] = lambda s: None) -> Image:
    """The cached image for ``packages``, built when absent (needs root, mmdebstrap, network to a mirror)."""
    final = cache_dir() / "vm" / image_key(packages)
    if (final / "image.json").is_file():
        return Image(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test run waits for the first one's build
        if not (final / "image.json").is_file():
            _build_image(final, tuple(sorted(packages)), log)
    return Image(final)


def _build_image(final: Path, packages: tuple[str, ...], log: Callable[[str], None]) -> None:
    work = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        t0 = time.monotonic()
        root = work / "root"
        log(f"building the guest image {final.name} with mmdebstrap ({len(packages)} packages) …")
        _run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=apt",
                "--include=" + ",".join(packages),
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--customize-hook=" + _CUSTOMIZE % {"label": ROOT_LABEL},
                SUITE,
                str(root),
            ]
        )
        t_root = time.monotonic()
        for pattern, name in (("vmlinuz-*", "vmlinuz"), ("initrd.img-*", "initrd.img")):
            found = sorted((root / "boot").glob(pattern))
            if len(found) != 1:
                raise RuntimeError(f"expected one /boot/{pattern} in the guest root, found {found}")
            shutil.copy2(found[0], work / name)
        kernel_version = sorted((root / "boot").glob("vmlinuz-*"))[0].name[len("vmlinuz-") :]
        raw = work / "root.raw"
        _run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-E", "root_owner=0:0", "-d", str(root), str(raw), IMAGE_SIZE])
        shutil.rmtree(root)
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")])
        raw.unlink()
        info = {
            "suite": SUITE,
            "packages": list(packages),
            "kernel": kernel_version,
            "size": IMAGE_SIZE,
            "qcow2_bytes": (work / "base.qcow2").stat().st_size,
            "layout": _LAYOUT,
            "root_seconds": round(t_root - t0, 1),
            "build_seconds": round(time.monotonic() - t0, 1),
        }
        (work / "image.json").write_text(json.dumps(info, indent=1) + "\n")
        os.replace(work, final)
        log(
            f"guest image built in {info['build_seconds']} s (root {info['root_seconds']} s), "
            f"{info['qcow2_bytes'] / 1e6:.0f} MB qcow2, kernel {kernel_version}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv[:3])} …` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return proc


# --- KVM or TCG -----------------------------------------------------------------------------
TCG = ("-accel", "tcg,thread=multi", "-cpu", "max")
KVM = ("-accel", "kvm", "-cpu", "host")
_ACCEL: dict[str, tuple[tuple[str, ...], str]] = {}
_KVM_MARKERS = ("Run /init as init process", "Loading, please wait")


def accelerator(image: Image, timeout: float = 10.0) -> tuple[tuple[str, ...], str]:
    """qemu's accelerator arguments and why: KVM if the guest's kernel boots under it here, else TCG.

    The probe boots ``image``'s kernel and initrd under KVM with no disks and waits
    for the kernel to start its initramfs (under a working KVM: about a second); a
    hang, an error or a crash before that means TCG.  Decided once per process; a
    "no" is also remembered in the cache for this host kernel, qemu and guest kernel
    (a "yes" is probed again: a stale "yes" would hang the guest).
    """
    forced = os.environ.get("DEBSHIP_VM_ACCEL", "").lower()
    if forced in ("kvm", "tcg"):
        return (KVM if forced == "kvm" else TCG), f"{forced} (DEBSHIP_VM_ACCEL)"
    if "choice" in _ACCEL:
        return _ACCEL["choice"]
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    facts = "\n".join([os.uname().release, qemu.splitlines()[0] if qemu else "", image.info().get("kernel", "")])
    memo = cache_dir() / "vm" / f"kvm-{hashlib.sha256(facts.encode()).hexdigest()[:16]}.json"
    try:
        known = json.loads(memo.read_text())
        _ACCEL["choice"] = TCG, known["reason"] + f" (remembered in {memo})"
        return _ACCEL["choice"]
    except (OSError, ValueError, KeyError):
        pass
    args, reason = _ACCEL["choice"] = _probe_kvm(image, timeout)
    if args == TCG and os.access("/dev/kvm", os.R_OK | os.W_OK):  # the probe ran and failed
        with contextlib.suppress(OSError):
            memo.write_text(json.dumps({"reason": reason, "facts": facts}) + "\n")
    return args, reason


def _probe_kvm(image: Image, timeout: float) -> tuple[tuple[str, ...], str]:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return TCG, "tcg: /dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="debship-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [
            "qemu-system-x86_64",
            *KVM,
            "-m",
            "512",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-kernel",
            str(image.kernel),
            "-initrd",
            str(image.initrd),
            "-append",
            "console=ttyS0,115200 panic=-1 root=/dev/nonexistent",
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            while time.monotonic() - t0 < timeout:
                text = console.read_text(errors="replace") if console.exists() else ""
                if any(m in text for m in _KVM_MARKERS):
                    return KVM, f"kvm: the guest kernel reached its initramfs in {time.monotonic() - t0:.1f} s"
                if proc.poll() is not None:
                    out = proc.stdout.read().decode(errors="replace").strip().splitlines()
                    why = (out[-1] if out else "") or _last_line(text) or f"exit {proc.returncode}"
                    return TCG, f"tcg: under KVM qemu stopped before the kernel ran its initramfs ({why})"
                time.sleep(0.2)
            text = console.read_text(errors="replace") if console.exists() else ""
            return TCG, (
                f"tcg: under KVM the guest kernel did not reach its initramfs in {timeout:g} s "
                f"(last console line: {_last_line(text) or 'none'})"
            )
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.replace("\r", "").splitlines() if l.strip()]
    return lines[-1][:200] if lines else ""


# --- the guest ------------------------------------------------------------------------------
@dataclasses.dataclass
class BootRecord:
    """One boot of the guest: when it began (qemu start, or the kernel's banner after a reboot)
    and how many seconds later sshd first answered."""

    started: float  # time.monotonic()
    ssh_after: float | None = None


def ssh_banner(port: int, timeout: float = 3.0) -> bool:
    """True when sshd answers on 127.0.0.1:``port``: qemu's user networking accepts the TCP
    connection before the guest listens, so only the banner shows that sshd is there."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class VMGuest(ClientSide):
    """A booted throwaway instance of ``image``; sshd on 127.0.0.1:``port``, user ``ops`` logs in with ``key_path``."""

    connect_timeout = 600.0

    def __init__(
        self,
        image: Image | None = None,
        workdir: Path | None = None,
        *,
        memory: int = 1024,
        cpus: int = 2,
        hostname: str = "debship-vm",
        start: bool = True,
        log: Callable[[str], None] = lambda s: None,
    ):
        self.image = image or cached_image(log=log)
        self.memory, self.cpus, self.hostname, self._log = memory, cpus, hostname, log
        self.dir = Path(tempfile.mkdtemp(prefix="debship-vm-", dir=workdir))
        self.port = 0
        self.console_path = self.dir / "console.log"
        self.overlay = self.dir / "overlay.qcow2"
        self.seed = self.dir / "seed.iso"
        self.accel: tuple[str, ...] = ()
        self.accel_reason = ""
        self.boots: list[BootRecord] = []  # one per boot of the guest, the first from qemu's start
        self._proc: subprocess.Popen | None = None
        self._conn: SSHConnection | None = None
        self._watcher: threading.Thread | None = None
        self._open(start)

    # -- what tests use (the same surface as SSHHost) ------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: float = 120.0,
        check: bool = False,
        stdin: bytes | None = None,
    ) -> Result:
        """Run ``argv`` in the guest over SSH as ``ops`` (``sudo``: as root), on one kept connection
        that is opened again when it dropped (after a reboot)."""
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self.connect()
                r = self._conn.run(list(argv), sudo=sudo, timeout=timeout, stdin=stdin)
                break
            except RemoteError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        if check and not r.ok:
            raise RuntimeError(
                f"in the guest, `{' '.join(argv)}` failed (exit {r.exit_code}): {(r.stdout + r.stderr).strip()[-2000:]}"
            )
        return r

    def boot_id(self) -> str:
        return self.run(["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout.strip()

    def console_log(self) -> str:
        """What the guest printed on its serial console, every boot (kernel, systemd, cloud-init)."""
        text = self.console_path.read_text(errors="replace") if self.console_path.exists() else ""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start qemu and return at once (the guest boots on its own; see ``wait_ssh()``)."""
        if self.running:
            return
        self.accel, self.accel_reason = accelerator(self.image)
        self._log(f"accelerator: {self.accel_reason}")
        for _attempt in range(3):  # a free port can be taken between the check and qemu's bind
            self.port = free_port()
            self._spawn()
            time.sleep(0.5)
            if self.running or "hostfwd" not in self._qemu_log():
                break
        if not self.running:
            raise RuntimeError(f"qemu did not start: {self._qemu_log()[-2000:]}")
        self._watcher = threading.Thread(target=self._watch, name=f"vm-watch-{self.port}", daemon=True)
        self._watcher.start()

    @property
    def ssh_after(self) -> float | None:
        """Seconds from qemu's start until the guest's sshd first answered (None: not yet)."""
        return self.boots[0].ssh_after if self.boots else None

    def wait_ssh(self, timeout: float = 600.0) -> float:
        """Wait until the guest's sshd answers (in its current boot); returns that boot's boot-to-SSH seconds."""
        deadline = time.monotonic() + timeout
        while not self.boots or self.boots[-1].ssh_after is None:
            if not self.running or time.monotonic() > deadline:
                state = "qemu exited" if not self.running else f"no SSH after {timeout:g} s"
                raise RuntimeError(f"guest on port {self.port}: {state}; console:\n{self.console_log()[-3000:]}")
            time.sleep(0.5)
        return self.boots[-1].ssh_after

    def wait_exit(self, timeout: float) -> bool:
        """Wait for qemu to exit by itself (after a poweroff inside); True if it did."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def shutdown(self, timeout: float = 120.0) -> bool:
        """Power the guest off from inside (``systemctl poweroff``) and wait for qemu to exit."""
        if not self.running:
            return True
        with contextlib.suppress(RemoteError, RuntimeError):
            self.run(["systemctl", "poweroff", "--no-block"], sudo=True, timeout=30)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return self.wait_exit(timeout)

    def close(self) -> None:
        """Kill qemu (if still running) and delete the overlay, the seed and the key."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------
    def _provision(self) -> None:
        """The per-instance files: key pair, empty known_hosts and ssh_config, overlay, NoCloud seed."""
        self.client_files(self.dir)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.disk), "-F", "qcow2", str(self.overlay)])
        seed = self.dir / "seed"
        seed.mkdir()
        key = self.public_key.strip()
        (seed / "user-data").write_text(_USER_DATA.format(user=self.user, key=key))
        instance = f"debship-{os.getpid()}-{time.time_ns()}"
        (seed / "meta-data").write_text(f"instance-id: {instance}\nlocal-hostname: {self.hostname}\n")
        _run(["cloud-localds", str(self.seed), str(seed / "user-data"), str(seed / "meta-data")])

    def _argv(self) -> list[str]:
        return [
            "qemu-system-x86_64",
            "-name",
            f"debship-vm-{self.port}",
            *self.accel,
            "-m",
            str(self.memory),
            "-smp",
            str(self.cpus),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            f"file:{self.console_path}",
            "-kernel",
            str(self.image.kernel),
            "-initrd",
            str(self.image.initrd),
            "-append",
            KERNEL_APPEND,
            "-drive",
            f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-drive",
            f"file={self.seed},if=virtio,format=raw,readonly=on",
            "-netdev",
            f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-object",
            "rng-random,filename=/dev/urandom,id=rng0",
            "-device",
            "virtio-rng-pci,rng=rng0",
        ]

    def _spawn(self) -> None:
        with open(self.dir / "qemu.log", "ab") as out:
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self.boots = [BootRecord(started=time.monotonic())]

    def _qemu_log(self) -> str:
        path = self.dir / "qemu.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _watch(self) -> None:
        """Follow the guest's boots: a new kernel banner on the console starts one (a reboot inside
        the guest restarts it in the same qemu), the first SSH banner after it ends its boot-to-SSH."""
        proc, seen, offset = self._proc, 0, 0
        while proc is not None and proc.poll() is None:
            try:
                with open(self.console_path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            # keep a partial line for the next read so a banner split across reads is not missed
            cut = chunk.rfind(b"\n") + 1
            offset += cut
            for _ in range(chunk[:cut].count(b"Linux version ")):
                seen += 1
                if seen > 1:
                    self.boots.append(BootRecord(started=time.monotonic()))
                    self._log(f"the guest rebooted (boot {seen})")
            boot = self.boots[-1]
            if boot.ssh_after is None and ssh_banner(self.port, timeout=2.0):
                boot.ssh_after = round(time.monotonic() - boot.started, 1)
                self._log(
                    f"sshd answered {boot.ssh_after} s after "
                    + ("qemu started" if len(self.boots) == 1 else "the guest's kernel started again")
                )
            time.sleep(0.5)
