"""The SSH connector: connecting (retries, ProxyJump), running and uploading over paramiko.

``connect(HostSpec.parse("ops@web1:2222"), ConnectOptions())`` retries while the host boots, checks its host key
(``hostkeys``: accept-new, strict or pin, OpenSSH known_hosts format), follows ``~/.ssh/config``
(``sshconfig.resolve``) and returns an ``SSHConnection``, one implementation of ``connection.Connection``:
``run(argv)`` drains stdout and stderr together, ``put()`` uploads with pipelined SFTP, ``hold()`` leaves a
command running (a lock).  This module and ``hostkeys`` are the only ones that log in with paramiko.  What to
run is decided elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import shlex
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import paramiko

from builder.errors import RemoteError
from builder.ship.connection import Result
from builder.ship.hostkeys import authenticate, check_host_key, prefer_key_types
from builder.ship.sshconfig import ConnectOptions, Hop, HostSpec, check_options, resolve

_RETRY_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ETIMEDOUT,
    errno.EPIPE,
}
_RETRY_SSH = re.compile(r"banner|session|EOF|reset|closed|timed? ?out", re.IGNORECASE)  # sshd still starting
_SUDO_ERRORS = (  # (exit code, sudo's words, what to tell) for `sudo -n`
    (
        1,
        ("a password is required", "a terminal is required"),
        "sudo wants a password for user {u}; give {u} "
        "passwordless sudo (NOPASSWD): echo '{u} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{u}",
    ),
    (1, ("not in the sudoers", "may not run sudo"), "user {u} may not use sudo; give it NOPASSWD sudo"),
    (127, ("sudo: command not found", "sudo: not found"), "sudo is not installed; install it"),
)
_CHUNK = 1 << 16
_UPLOAD_CHUNK = 128 << 10  # OpenSSH's sftp-server accepts writes of up to 256 KiB
_LINGER = 2.0  # s to wait for EOF after the exit status (a background child may hold stdout open)
logging.getLogger("paramiko").addHandler(logging.NullHandler())  # no tracebacks on stderr unless logging is set up


class _Deadline(Exception):
    """A command ran past its timeout."""


class _HopFailed(Exception):
    def __init__(self, hop: Hop, cause: BaseException):
        super().__init__(str(cause))
        self.hop, self.cause = hop, cause


def connect(spec: HostSpec, opts: ConnectOptions | None = None) -> SSHConnection:
    """An authenticated connection to ``spec``; waits up to ``opts.connect_timeout`` for its sshd."""
    return SSHConnection(spec, opts or ConnectOptions()).reconnect()


class SSHConnection:
    """An SSH session to one host (through its jump hosts); made by ``connect()``."""

    def __init__(self, spec: HostSpec, opts: ConnectOptions):
        self.spec, self.opts, self.name = spec, opts, str(spec)
        check_options(opts, self.name)
        self._hop = resolve(spec, opts)
        self.user = self._hop.user
        self._transports: list[paramiko.Transport] = []
        self._sftp: paramiko.SFTPClient | None = None

    def reconnect(self) -> SSHConnection:
        """(Re)open the session, retrying while the host boots, until ``connect_timeout`` (e.g. after a reboot)."""
        self.close()
        deadline = time.monotonic() + self.opts.connect_timeout
        delay, last = 0.25, None
        while True:
            try:
                self._transports = _dial(self._hop, self.opts, deadline)
                return self
            except _HopFailed as e:
                if not _retryable(e.cause):
                    raise _explain(e.cause, e.hop, self.name) from e.cause
                last = e.cause
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteError(
                    f"host {self.name}: no SSH after {self.opts.connect_timeout:g} s (last error: "
                    f"{_describe(last)}); check the address/port and that sshd runs"
                ) from last
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 1.0)

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: dict | None = None,
    ) -> Result:
        """Run ``argv`` (shlex-quoted); a non-zero exit is a Result, a lost connection or timeout a RemoteError."""
        argv = tuple(argv)
        full = [*(["env", *(f"{k}={v}" for k, v in env.items())] if env else []), *argv]
        sudo = sudo and self.user != "root"
        command = shlex.join(["sudo", "-n", "--", *full] if sudo else full)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            chan = self._transport().open_session(timeout=30)
            try:
                chan.exec_command(command)
                out, err, code = _pump(chan, stdin or b"", deadline)
            finally:
                chan.close()
        except _Deadline as e:
            raise RemoteError(
                f"host {self.name}: `{command}` still running after {timeout:g} s; "
                "raise the timeout or look at what it waits for"
            ) from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise RemoteError(
                f"host {self.name}: connection lost while running `{command}` ({_describe(e)}); reconnect and retry"
            ) from e
        result = Result(argv, code, out.decode(errors="replace"), err.decode(errors="replace"))
        return _check_sudo(result, self.name, self.user) if sudo else result

    def hold(
        self,
        argv: Sequence[str],
        *,
        until: str,
        sudo: bool = False,
        timeout: float = 600.0,
        on_line: Callable[[str], None] | None = None,
    ) -> Held | Result:
        """Start ``argv`` and return once it prints the line ``until``, leaving it running (a lock
        holder) until ``Held.close()`` or the connection ends; lines before it go to ``on_line``.
        If the command exits first, its ``Result`` is returned instead."""
        sudo = sudo and self.user != "root"
        command = shlex.join(["sudo", "-n", "--", *argv] if sudo else list(argv))
        try:
            chan = self._transport().open_session(timeout=30)
            chan.exec_command(command)
            out = _read_until(chan, until, time.monotonic() + timeout, on_line)
        except (paramiko.SSHException, OSError, EOFError, _Deadline) as e:
            raise RemoteError(
                f"host {self.name}: `{command}` did not answer ({_describe(e)}); reconnect and retry"
            ) from e
        if out is None:
            return Held(chan)
        result = Result(tuple(argv), chan.recv_exit_status(), out, chan.recv_stderr(1 << 16).decode(errors="replace"))
        chan.close()
        return _check_sudo(result, self.name, self.user) if sudo else result

    def put(self, local: Path, remote: str, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Upload ``local`` to ``remote``: pipelined SFTP to ``remote.part``, then an atomic rename."""
        local = Path(local)
        if not local.is_file():
            raise RemoteError(f"host {self.name}: cannot upload {local}: no such local file")
        try:
            if self._sftp is None:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport())
            _upload(self._sftp, local, f"{remote}.part", progress)
            self._sftp.posix_rename(f"{remote}.part", remote)
        except (OSError, paramiko.SSHException, EOFError) as e:
            raise RemoteError(
                f"host {self.name}: upload of {local} to {remote} failed ({_describe(e)}); check that "
                f"{os.path.dirname(remote) or '.'} exists and {self.user} may write there"
            ) from e

    def sha256(self, remote: str, *, sudo: bool = False) -> str:
        """The sha256 of a remote file, by ``sha256sum`` on the host."""
        r = self.run(["sha256sum", "--", remote], sudo=sudo, timeout=600)
        digest = r.stdout.split()[0].lstrip("\\") if r.ok and r.stdout.split() else ""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise RemoteError(f"host {self.name}: cannot checksum {remote}: {r.stderr.strip() or r.stdout.strip()}")
        return digest

    def _transport(self) -> paramiko.Transport:
        if not self._transports or not self._transports[-1].is_active():
            raise RemoteError(f"host {self.name}: not connected (the connection dropped); check the network and retry")
        return self._transports[-1]

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        for t in reversed(self._transports):
            t.close()
        self._transports = []

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_sudo(r: Result, name: str, user: str) -> Result:
    """``sudo -n`` refused (a password wanted, no sudoers entry): say so and how to fix it."""
    for code, needles, why in _SUDO_ERRORS:
        if r.exit_code == code and any(n in r.stderr for n in needles):
            raise RemoteError(f"host {name}: {why.format(u=user)}, or connect as root")
    return r


class Held:
    """A command left running on the host (see ``SSHConnection.hold``); ``close()`` ends it."""

    def __init__(self, chan: paramiko.Channel):
        self._chan = chan

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._chan.shutdown_write()  # its stdin ends: a `cat` holding a lock exits
            self._chan.close()


def _read_until(chan: paramiko.Channel, until: str, deadline: float, on_line) -> str | None:
    """Read stdout lines until ``until`` (None: seen) or the command exits (its stdout so far)."""
    buf, seen = b"", []
    while True:
        select.select([chan], [], [], 0.2)
        while chan.recv_ready():
            buf += chan.recv(_CHUNK)
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            if text == until:
                return None
            seen.append(text)
            if on_line is not None:
                on_line(text)
        if chan.exit_status_ready() and not chan.recv_ready():
            return "\n".join([*seen, buf.decode(errors="replace")])
        if time.monotonic() > deadline:
            raise _Deadline


def _pump(chan: paramiko.Channel, stdin: bytes, deadline: float | None) -> tuple[bytes, bytes, int]:
    """Feed stdin and drain stdout and stderr in one loop, so neither side fills up and blocks the other."""
    out, err, pending, exited = bytearray(), bytearray(), memoryview(stdin), None
    if not pending:
        chan.shutdown_write()
    while True:
        if pending and chan.send_ready() and not chan.exit_status_ready():
            pending = pending[chan.send(pending[:_CHUNK]) :]
            if not pending:
                chan.shutdown_write()
        select.select([chan], [], [], 0.01 if pending else 0.2)
        while chan.recv_ready():
            out += chan.recv(_CHUNK)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(_CHUNK)
        if chan.exit_status_ready():
            exited = exited or time.monotonic()
            done = chan.eof_received or time.monotonic() - exited > _LINGER
            if done and not (chan.recv_ready() or chan.recv_stderr_ready()):
                return bytes(out), bytes(err), chan.recv_exit_status()
        elif chan.closed or not chan.get_transport().is_active():
            raise EOFError("the channel closed without an exit status")
        if deadline is not None and time.monotonic() > deadline:
            raise _Deadline


def _dial(target: Hop, opts: ConnectOptions, deadline: float) -> list[paramiko.Transport]:
    """Connect hop by hop: TCP to the first, then a direct-tcpip channel through each hop to the next."""
    transports: list[paramiko.Transport] = []
    try:
        for hop in (*target.jumps, target):
            left = max(1.0, deadline - time.monotonic())
            try:
                if transports:
                    sock = transports[-1].open_channel(
                        "direct-tcpip", (hop.hostname, hop.port), ("127.0.0.1", 0), timeout=left
                    )
                else:
                    sock = socket.create_connection((hop.hostname, hop.port), timeout=min(10.0, left))
                    # Without it Nagle and delayed ACKs add ~45 ms to every command (bench/ship.py).
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                transports.append(_handshake(hop, sock, opts, deadline))
            except Exception as e:
                raise _HopFailed(hop, e) from e
        return transports
    except BaseException:
        for t in reversed(transports):
            t.close()
        raise


def _handshake(hop: Hop, sock, opts: ConnectOptions, deadline: float) -> paramiko.Transport:
    t = paramiko.Transport(sock)
    try:
        t.banner_timeout = min(30.0, max(1.0, deadline - time.monotonic()))
        prefer_key_types(t, hop, opts)
        _prefer_fast_ciphers(t)
        t.start_client(timeout=max(5.0, deadline - time.monotonic()))
        check_host_key(hop, t.get_remote_server_key(), opts)
        authenticate(t, hop, opts)
        t.set_keepalive(15)
        return t
    except BaseException:
        t.close()
        raise


def _upload(sftp: paramiko.SFTPClient, local: Path, remote: str, progress) -> None:
    """Pipelined SFTP writes of ``_UPLOAD_CHUNK`` bytes (paramiko's own put() sends 32 KiB writes,
    about 1.25x slower on loopback); the size is confirmed afterwards."""
    total, sent = local.stat().st_size, 0
    with open(local, "rb") as src, sftp.open(remote, "wb") as dst:
        dst.set_pipelined(True)
        dst.MAX_REQUEST_SIZE = _UPLOAD_CHUNK
        for chunk in iter(lambda: src.read(_UPLOAD_CHUNK), b""):
            dst.write(chunk)
            sent += len(chunk)
            if progress:
                progress(sent, total)
    size = sftp.stat(remote).st_size
    if size != sent:
        raise OSError(f"size mismatch after upload: {size} bytes on the host, {sent} sent")


def _prefer_fast_ciphers(t: paramiko.Transport) -> None:
    """AES-GCM first when both sides have it: measured 1.08x faster than aes128-ctr + HMAC here."""
    sec = t.get_security_options()
    fast = [c for c in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") if c in sec.ciphers]
    sec.ciphers = tuple(fast + [c for c in sec.ciphers if c not in fast])


def _retryable(e: BaseException) -> bool:
    """What a booting host gives (nothing listens yet, sshd starting or restarting) is worth another try."""
    if isinstance(e, (RemoteError, socket.gaierror, paramiko.AuthenticationException)):
        return False
    if isinstance(e, (EOFError, socket.timeout, TimeoutError)):
        return True
    if isinstance(e, paramiko.ChannelException):  # the jump host could not reach the target (yet)
        return e.code != paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    if isinstance(e, OSError):
        return e.errno in _RETRY_ERRNOS
    return isinstance(e, paramiko.SSHException) and bool(_RETRY_SSH.search(str(e)))


def _explain(e: BaseException, hop: Hop, name: str) -> RemoteError:
    """The one-line message for an error that retrying will not fix."""
    if isinstance(e, RemoteError):
        return e if hop.label == name else RemoteError(f"{e} [jump host for {name}]")
    where = name if hop.label == name else f"{name} (jump host {hop.label})"
    if isinstance(e, socket.gaierror):
        return RemoteError(
            f"host {where}: cannot resolve {hop.hostname!r} ({e.strerror}); "
            "check the host name (or HostName in your ssh config)"
        )
    if isinstance(e, paramiko.ChannelException):
        return RemoteError(
            f"host {name}: the jump host refuses to forward to {hop.hostname}:{hop.port} ({e.text}); "
            "set AllowTcpForwarding yes on it"
        )
    return RemoteError(f"host {where}: SSH failed: {_describe(e)}")


def _describe(e: BaseException | None) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
