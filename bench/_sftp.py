"""debship's SFTP upload vs OpenSSH's `sftp` to one loopback host (`bench/ship.py --only sftp`)."""

from __future__ import annotations

import contextlib
import hashlib
import random
import statistics
import subprocess
import time
from pathlib import Path

from _hosts import in_thread, make_hosts

from hostlab.sshhost import SSHHost

MB = 1_000_000
OPENSSH, OPENSSH_AES = "OpenSSH `sftp -b` (default: chacha20-poly1305)", "OpenSSH `sftp -b -c aes128-ctr`"
DEBSHIP = "debship `Connection.put()` (paramiko)"


def bench_sftp(lower: Path, size_mb: int, repeat: int, work: Path) -> None:
    """End to end (connect, auth, upload, exit) and transfer only, per client, rounds interleaved.
    Transfer only: debship's put() on an open Connection; OpenSSH's run minus a `pwd`-only session."""
    local = work / "payload.bin"
    local.write_bytes(random.Random(20240601).randbytes(size_mb * MB))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    remote = "/var/tmp/x"
    aes = ("-c", "aes128-ctr", "-o", "MACs=hmac-sha2-256")  # what paramiko negotiates with this sshd
    e2e: dict[str, list[float]] = {OPENSSH: [], OPENSSH_AES: [], DEBSHIP: []}
    xfer: dict[str, list[float]] = {k: [] for k in e2e}
    shakes = []
    with contextlib.ExitStack() as stack:
        (host,) = make_hosts(stack, lower, 1, work)
        sftp_openssh(host, None)  # records the host key
        conn = stack.enter_context(host.connect())
        landed = host.root.path / remote.lstrip("/")

        def timed(func) -> float:
            t0 = time.perf_counter()
            in_thread(func)
            return time.perf_counter() - t0

        for _ in range(repeat):
            shakes.append(shake := timed(lambda: sftp_openssh(host, None)))
            for name, extra in ((OPENSSH, ()), (OPENSSH_AES, aes)):
                e2e[name].append(timed(lambda extra=extra: sftp_openssh(host, local, remote, extra)))
                xfer[name].append(e2e[name][-1] - shake)
                check(landed, digest)
            e2e[DEBSHIP].append(timed(lambda: _debship_fresh(host, local, remote)))
            check(landed, digest)
            xfer[DEBSHIP].append(timed(lambda: conn.put(local, remote)))
            check(landed, digest)
    print(f"\n### SFTP upload of {size_mb} MB (random, seeded) to one loopback host, median of {repeat}\n")
    print(
        "| client | end to end s | MB/s | vs OpenSSH | transfer only s | MB/s | vs OpenSSH |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    base_e, base_x = statistics.median(e2e[OPENSSH]), statistics.median(xfer[OPENSSH])
    for name in e2e:
        me, mx = statistics.median(e2e[name]), statistics.median(xfer[name])
        print(
            f"| {name} | {me:.3f} | {size_mb / me:.0f} | {base_e / me:.2f}x "
            f"| {mx:.3f} | {size_mb / mx:.0f} | {base_x / mx:.2f}x |"
        )
    print(
        f"\nGoal (issue): debship >= 0.90x OpenSSH. Transfer only for OpenSSH = its run minus a `pwd`-only "
        f"session in the same round (median {statistics.median(shakes):.3f} s)."
    )


def sftp_openssh(host: SSHHost, local: Path | None, remote: str = "", extra: tuple[str, ...] = ()) -> None:
    batch = host.dir / "batch"
    batch.write_text(f"put {local} {remote}\n" if local else "pwd\n")
    subprocess.run(
        [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-F",
            str(host.ssh_config),
            "-i",
            str(host.key_path),
            "-o",
            f"UserKnownHostsFile={host.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            *extra,
            "-P",
            str(host.port),
            f"{host.user}@127.0.0.1",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def _debship_fresh(host: SSHHost, local: Path, remote: str) -> None:
    with host.connect() as conn:
        conn.put(local, remote)


def check(path: Path, digest: str) -> None:
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise SystemExit(f"upload to {path} is damaged")
    path.unlink()
