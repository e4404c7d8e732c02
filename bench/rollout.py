"""Wall time of a staged rollout against one batch: 16 loopback hosts, `--batch 1,25%,100% --soak 10s`.

    sudo .venv/bin/python bench/rollout.py [--hosts 16] [--repeat 1] [--soak 10]

Hosts are the test harness's loopback SSH hosts (hostlab/sshhost.py; no systemd runs on them, so
the soak has nothing to watch and only holds each batch for its duration, which is the cost a
rollout adds), fresh for every run, removed afterwards (also on Ctrl-C).  Each case is one
`debship ship` process (`--parallel` = hosts), timed until every host is done; dpkg must then
have the package installed in every host's root.  Prints a markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import _tools  # noqa: E402
from _hosts import bench_root, check_installed, make_hosts  # noqa: E402

from builder.build import build_deb  # noqa: E402
from builder.debinfo import read_package  # noqa: E402
from builder.ship.rollout import parse_batches, plan_batches  # noqa: E402


def cases(soak: float) -> dict[str, list[str]]:
    return {
        "one batch": [],
        "1,25%,100%, no soak": ["--batch", "1,25%,100%"],
        f"1,25%,100%, --soak {soak:g}s": ["--batch", "1,25%,100%", "--soak", f"{soak:g}s"],
    }


def one_run(deb: Path, lower: Path, n: int, extra: list[str], work: Path, who: str) -> float:
    with contextlib.ExitStack() as stack:
        hosts = make_hosts(stack, lower, n, work)
        run_dir = Path(tempfile.mkdtemp(prefix="rollout-", dir=work))
        argv, env = _tools.debship_command(deb, hosts, run_dir)
        run = _tools.run_timed([*argv, *extra], env, run_dir, who)
        pkg = read_package(deb)
        check_installed(hosts, pkg.name, pkg.version, who)
    return run.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=16, help="loopback hosts (default 16)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; medians are printed (default 1)")
    ap.add_argument("--soak", type=float, default=10.0, help="soak seconds (default 10)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/rollout.py needs root (overlay mounts, chroot, unshare), as the tests do")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: hosts removed
    lower = bench_root()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="debship-bench-rollout-") as tmp:
        work = Path(tmp)
        deb = build_deb(REPO, work / "dist").path
        for i in range(args.repeat):  # rounds interleaved, so drift hits every case alike
            for case, extra in cases(args.soak).items():
                took = one_run(deb, lower, args.hosts, extra, work, case)
                times.setdefault(case, []).append(took)
                print(f"  round {i + 1}/{args.repeat}: {case}: {took:.2f} s", file=sys.stderr)
    sizes = plan_batches(args.hosts, parse_batches("1,25%,100%"))
    base = statistics.median(times["one batch"])
    print(
        f"\n### First install on {args.hosts} loopback hosts, `--parallel {args.hosts}`: seconds until all "
        f"are done, median of {args.repeat}\n"
    )
    print("| rollout | batches | seconds | vs one batch |\n|---|---|---:|---:|")
    for case, runs in times.items():
        shown = "1" if case == "one batch" else "+".join(map(str, sizes))
        med = statistics.median(runs)
        print(f"| {case} | {shown} | {med:.2f} | {med / base:.2f}x (+{med - base:.1f} s) |")
    print(f"\nThe soak's floor: {len(sizes)} batches x {args.soak:g} s = {len(sizes) * args.soak:g} s.")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    argv = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"(`{argv}`: {os.cpu_count()} CPUs, load average {load} at the end)")


if __name__ == "__main__":
    main()
