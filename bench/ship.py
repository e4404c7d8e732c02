"""Time `ship` to 1 vs 8 loopback hosts, and debship's SFTP upload vs OpenSSH's `sftp`.

    sudo .venv/bin/python bench/ship.py [--repeat N] [--hosts 8] [--mb 50]

Hosts are the test harness's loopback SSH hosts (tests/harness: an overlay of the cached
Debian root, sshd on 127.0.0.1 in a private mount+PID namespace, user `ops` with
passwordless sudo), fresh for every repetition and removed afterwards, also on Ctrl-C.
Prints markdown tables of medians; nothing is asserted (see DESIGN.md, Test tiers).
Goals (from the issue): 8 hosts within 2x one host; upload >= 0.9x OpenSSH.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from builder.build import build_deb  # noqa: E402
from builder.debinfo import read_package  # noqa: E402
from builder.ship import ShipOptions, ship  # noqa: E402
from tests.harness.rootfs import Root, cached_root  # noqa: E402
from tests.harness.sshhost import SSHHost  # noqa: E402

MB = 1_000_000
OPENSSH, OPENSSH_AES = "OpenSSH `sftp -b` (default: chacha20-poly1305)", "OpenSSH `sftp -b -c aes128-ctr`"
DEBSHIP = "debship `Connection.put()` (paramiko)"


def make_hosts(stack: contextlib.ExitStack, lower: Path, n: int, work: Path) -> list[SSHHost]:
    """n running hosts that all accept the first host's key (as test_ship.share_key does)."""
    hosts = []
    for _ in range(n):
        root = stack.enter_context(Root(lower, workdir=work))
        hosts.append(stack.enter_context(SSHHost(root, workdir=work)))
    key = Path(f"{hosts[0].key_path}.pub").read_text()
    for h in hosts[1:]:
        (h.root.path / "home/ops/.ssh/authorized_keys").write_text(key)
    return hosts


def in_thread(func):
    """Run func in a daemon thread; a Ctrl-C in the main thread unwinds the ExitStack (killing the
    hosts' sshd, which makes the worker fail fast) instead of waiting for the thread pool."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(value=func()), daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.2)
    if "value" not in box:
        raise RuntimeError("the worker thread failed (see its traceback above)")
    return box["value"]


def ship_once(pkg, lower: Path, n: int, work: Path) -> tuple[float, dict[str, list[float]]]:
    """Seconds to ship pkg to n fresh hosts (parallel=n), and each step's seconds per host."""
    events = []
    with contextlib.ExitStack() as stack:
        hosts = make_hosts(stack, lower, n, work)
        first = hosts[0]
        opts = ShipOptions(connect=first.options(), boot_timeout=60, lock_timeout=60)
        t0 = time.perf_counter()
        results = in_thread(lambda: ship(pkg, [h.spec for h in hosts], opts, events.append, parallel=n))
        took = time.perf_counter() - t0
        bad = [r for r in results if r.outcome != "installed"]
        if bad or not all((h.root.path / "var/lib/dpkg/info/fleet-agent.list").is_file() for h in hosts):
            raise SystemExit(f"ship to {n} host(s) failed: {bad}")
    steps: dict[str, list[float]] = {}
    started = {}
    for e in events:
        if e.status == "start":
            started[e.host, e.step] = e.elapsed
        elif (e.host, e.step) in started:
            steps.setdefault(e.step, []).append(e.elapsed - started.pop((e.host, e.step)))
    return took, steps


def bench_ship(pkg, lower: Path, counts: list[int], repeat: int, work: Path) -> None:
    times: dict[int, list[float]] = {n: [] for n in counts}
    steps: dict[int, dict[str, list[float]]] = {n: {} for n in counts}
    for i in range(repeat):
        for n in counts:  # interleaved, so drift hits both sides alike
            took, per_step = ship_once(pkg, lower, n, work)
            times[n].append(took)
            for k, v in per_step.items():
                steps[n].setdefault(k, []).extend(v)
            print(f"  run {i + 1}/{repeat}: {n} host(s) {took:.2f} s", file=sys.stderr)
    base = statistics.median(times[counts[0]])
    print(f"\n### ship {pkg.filename} ({pkg.size} bytes), fresh install, parallel = hosts\n")
    print("| hosts | median s | runs (s) | ratio vs 1 host |\n|---:|---:|---|---:|")
    for n in counts:
        med = statistics.median(times[n])
        print(f"| {n} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times[n])} | {med / base:.2f}x |")
    ratio = statistics.median(times[counts[-1]]) / base
    print(f"\nGoal (issue): {counts[-1]} hosts within 2x one host: {'met' if ratio <= 2 else 'missed'} ({ratio:.2f}x).")
    print("\nPer step, seconds per host (mean / max over hosts and runs):\n")
    print("| step | " + " | ".join(f"{n} host(s)" for n in counts) + " |\n|---|" + "---:|" * len(counts))
    for step in dict.fromkeys(k for n in counts for k in steps[n]):  # in the order ship ran them
        cells = [f"{statistics.mean(v):.2f} / {max(v):.2f}" if (v := steps[n].get(step)) else "-" for n in counts]
        print(f"| {step} | " + " | ".join(cells) + " |")


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
        host, = make_hosts(stack, lower, 1, work)
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
                e2e[name].append(timed(lambda: sftp_openssh(host, local, remote, extra)))
                xfer[name].append(e2e[name][-1] - shake)
                check(landed, digest)
            e2e[DEBSHIP].append(timed(lambda: _debship_fresh(host, local, remote)))
            check(landed, digest)
            xfer[DEBSHIP].append(timed(lambda: conn.put(local, remote)))
            check(landed, digest)
    print(f"\n### SFTP upload of {size_mb} MB (random, seeded) to one loopback host, median of {repeat}\n")
    print("| client | end to end s | MB/s | vs OpenSSH | transfer only s | MB/s | vs OpenSSH |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    base_e, base_x = statistics.median(e2e[OPENSSH]), statistics.median(xfer[OPENSSH])
    for name in e2e:
        me, mx = statistics.median(e2e[name]), statistics.median(xfer[name])
        print(f"| {name} | {me:.3f} | {size_mb / me:.0f} | {base_e / me:.2f}x "
              f"| {mx:.3f} | {size_mb / mx:.0f} | {base_x / mx:.2f}x |")
    print(f"\nGoal (issue): debship >= 0.90x OpenSSH. Transfer only for OpenSSH = its run minus a `pwd`-only "
          f"session in the same round (median {statistics.median(shakes):.3f} s).")


def sftp_openssh(host: SSHHost, local: Path | None, remote: str = "", extra: tuple[str, ...] = ()) -> None:
    batch = host.dir / "batch"
    batch.write_text(f"put {local} {remote}\n" if local else "pwd\n")
    subprocess.run(["sftp", "-q", "-b", str(batch), "-F", str(host.ssh_config), "-i", str(host.key_path),
                    "-o", f"UserKnownHostsFile={host.known_hosts}", "-o", "StrictHostKeyChecking=accept-new",
                    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", *extra, "-P", str(host.port),
                    f"{host.user}@127.0.0.1"], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _debship_fresh(host: SSHHost, local: Path, remote: str) -> None:
    with host.connect() as conn:
        conn.put(local, remote)


def check(path: Path, digest: str) -> None:
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise SystemExit(f"upload to {path} is damaged")
    path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; medians are printed (default 3)")
    ap.add_argument("--hosts", type=int, default=8, help="the many-hosts case (default 8)")
    ap.add_argument("--mb", type=int, default=50, help="size of the upload in MB (default 50)")
    ap.add_argument("--only", choices=("ship", "sftp"), help="run one of the two benchmarks")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/ship.py needs root (overlay mounts, chroot, unshare), as the tests do")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: hosts removed
    lower = cached_root()
    with tempfile.TemporaryDirectory(prefix="debship-bench-ship-") as tmp:
        work = Path(tmp)
        if args.only != "sftp":
            pkg = read_package(build_deb(REPO, work / "dist").path)
            bench_ship(pkg, lower, [1, args.hosts], args.repeat, work)
        if args.only != "ship":
            bench_sftp(lower, args.mb, args.repeat, work)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    argv = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"\n(`{argv}`: {os.cpu_count()} CPUs, load average {load} at the end)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the ExitStacks have removed every host by now
        sys.exit("bench/ship.py: interrupted; all hosts removed")
