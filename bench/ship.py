"""Time installing one .deb on 1, 8 and 16 loopback hosts: debship `ship` vs Ansible vs pyinfra.

    bash tools/bench-setup.sh          # ansible-core and pyinfra from PyPI into ./.venv-bench
    sudo .venv/bin/python bench/ship.py [--repeat N] [--counts 1,8,16] [--tools ...] [--only ...]

Hosts are the test harness's loopback SSH hosts (hostlab/sshhost.py: an overlay of a cached Debian
root, sshd on 127.0.0.1 in a private mount+PID namespace, user `ops` with passwordless sudo, no
systemd running), fresh for every tool and repetition (each does a real first install) and
removed afterwards, also on Ctrl-C.  Every tool runs as its own command, wall time until all
hosts are done; dpkg must then have the package installed in every host's root.
debship's runs go through bench/_counted.py, which records its SSH round trips per host.
Prints markdown tables of medians; nothing is asserted (see DESIGN.md, Test tiers).
Goals (issue 12): overhead <= 1.0 s per host beyond apt-get install; 16 hosts <= 2.5x one
host; faster than Ansible and pyinfra at 1, 8 and 16 hosts.  `--only sftp`: upload vs OpenSSH.
`--only cost --counts 8,16,32`: the controller's CPU seconds and peak memory per host (issue 24).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import _tools  # noqa: E402
from _hosts import bench_root, check_installed, make_hosts  # noqa: E402
from _sftp import bench_sftp  # noqa: E402

from builder.build import build_deb  # noqa: E402
from builder.debinfo import PackageInfo, read_package  # noqa: E402

TOOLS = {  # name -> (column title, command maker)
    "debship": ("debship `ship`", _tools.debship_command),
    "ansible": ("Ansible, gather_facts: false", lambda d, h, r: _tools.ansible_command(d, h, r, False)),
    "ansible-facts": ("Ansible, gather_facts: true (default)", lambda d, h, r: _tools.ansible_command(d, h, r, True)),
    "pyinfra": ("pyinfra", _tools.pyinfra_command),
    "ansible-debship": ("Ansible + debship.fleet.apply", _tools.ansible_debship_command),
}


@dataclass(frozen=True)
class HostStats:
    """One host of one debship run: its round trips and where its time went."""

    trips: dict[str, int]  # connect / run / put -> count
    total: float  # s from the host's first step to its result
    apt: float  # s in the `apt-get install` command itself
    install_step: float  # s of the "install" step (apt-get + the facts read after it)
    outcome: str

    @property
    def overhead(self) -> float:
        return self.total - self.apt


def host_stats(run_dir: Path, output: str) -> list[HostStats]:
    """Per host: the summary line of `ship --json`, its install step and its recorded round trips."""
    records = json.loads((run_dir / "trips.json").read_text())
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    stats = []
    for summary in (e for e in events if e["step"] == "summary"):
        host = summary["host"]
        mine = [r for r in records if r["host"] == host]
        trips = {k: sum(r["kind"] == k for r in mine) for k in ("connect", "run", "put")}
        apt = sum(r["seconds"] for r in mine if r["kind"] == "run" and " apt-get install " in f" {r['what']} ")
        marks = {e["status"]: e["elapsed"] for e in events if e["host"] == host and e["step"] == "install"}
        step = marks["ok"] - marks["start"] if {"ok", "start"} <= marks.keys() else 0.0
        stats.append(HostStats(trips, summary["elapsed"], apt, step, summary["outcome"]))
    return stats


CPU: dict = collections.defaultdict(list)  # (tool, hosts) -> controller CPU seconds per host, one per run


def install_once(tool: str, deb: Path, pkg: PackageInfo, lower: Path, n: int, work: Path) -> tuple[float, list]:
    """Seconds for ``tool`` to install ``deb`` on n fresh hosts; debship's per-host stats."""
    with contextlib.ExitStack() as stack:
        hosts = make_hosts(stack, lower, n, work)
        run_dir = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=work))
        argv, env = TOOLS[tool][1](deb, hosts, run_dir)
        run = _tools.run_timed(argv, env, run_dir, f"{tool} on {n} host(s)")
        check_installed(hosts, pkg.name, pkg.version, f"{tool} on {n} host(s)")
    CPU[tool, n].append(run.cpu / n)
    return run.seconds, host_stats(run_dir, run.output) if tool.startswith("debship") else []


def bench_cost(pkg: PackageInfo, lower: Path, counts: list[int], tools: list[str], repeat: int, work: Path) -> None:
    """What the controller spends: CPU seconds (user + sys of the tool and the processes it
    reaped: Ansible's forks and ssh clients) and the peak of its process tree's summed RSS."""
    runs = {(t, n): [] for t in tools for n in counts}
    for i in range(repeat):
        for n in counts:
            for tool in tools[i % len(tools) :] + tools[: i % len(tools)]:
                with contextlib.ExitStack() as stack:
                    hosts = make_hosts(stack, lower, n, work)
                    run_dir = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=work))
                    argv, env = TOOLS[tool][1](pkg.path, hosts, run_dir)
                    run = _tools.run_timed(argv, env, run_dir, f"{tool} on {n} host(s)")
                    check_installed(hosts, pkg.name, pkg.version, f"{tool} on {n} host(s)")
                runs[tool, n].append(run)
                print(
                    f"  round {i + 1}/{repeat}: {tool} on {n} host(s) {run.seconds:.2f} s, "
                    f"{run.cpu:.2f} CPU s, {run.peak_rss >> 10} MiB",
                    file=sys.stderr,
                )
    print(f"\n### Controller cost: install {pkg.filename} on fresh hosts, all in parallel; median of {repeat}\n")
    print(
        "CPU s = user + sys of the controller (and the processes it reaped); RSS = peak of its process "
        "tree's summed RSS; per host = divided by the host count.\n"
    )
    print(
        "| hosts | tool | wall s | CPU s | CPU s per host | peak RSS MiB | RSS MiB per host |\n|---:|---|" + "---:|" * 5
    )
    for n in counts:
        for tool in tools:
            cpu = statistics.median(r.cpu for r in runs[tool, n])
            rss = statistics.median(r.peak_rss for r in runs[tool, n]) / 1024
            wall = statistics.median(r.seconds for r in runs[tool, n])
            print(f"| {n} | {TOOLS[tool][0]} | {wall:.2f} | {cpu:.2f} | {cpu / n:.3f} | {rss:.0f} | {rss / n:.1f} |")


def bench_compare(
    pkg: PackageInfo, lower: Path, counts: list[int], tools: list[str], repeat: int, work: Path
) -> dict[int, list[HostStats]]:
    """Rounds interleaved (every tool and host count once per round), so drift hits all alike."""
    times = {(t, n): [] for t in tools for n in counts}
    stats: dict[int, list[HostStats]] = {n: [] for n in counts}
    for i in range(repeat):
        for n in counts:
            for tool in tools:
                took, per_host = install_once(tool, pkg.path, pkg, lower, n, work)
                times[tool, n].append(took)
                stats[n] += per_host
                print(f"  round {i + 1}/{repeat}: {tool} on {n} host(s) {took:.2f} s", file=sys.stderr)
    print_compare(pkg, counts, tools, times, repeat)
    return stats


def print_compare(pkg: PackageInfo, counts: list[int], tools: list[str], times: dict, repeat: int) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\n### Install {pkg.filename} ({pkg.size} bytes) on fresh hosts, all in parallel: "
        f"seconds until all are done, median of {repeat}\n"
    )
    print("| hosts | " + " | ".join(TOOLS[t][0] for t in tools) + " |\n|---:|" + "---:|" * len(tools))
    for n in counts:
        cells = [
            f"{med[t, n]:.2f}"
            + (f" ({med[t, n] / med['debship', n]:.1f}x)" if t != "debship" and "debship" in tools else "")
            for t in tools
        ]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(
        "| "
        + f"{counts[-1]} vs {counts[0]}"
        + " | "
        + " | ".join(f"{med[t, counts[-1]] / med[t, counts[0]]:.2f}x" for t in tools)
        + " |"
    )
    print("\nController CPU seconds per host (user + system of the tool and its children), median:\n")
    print("| hosts | " + " | ".join(TOOLS[t][0] for t in tools) + " |\n|---:|" + "---:|" * len(tools))
    for n in counts:
        print(f"| {n} | " + " | ".join(f"{statistics.median(CPU[t, n]):.2f}" for t in tools) + " |")
    print(
        "\n(x) = that tool's time / debship's.  Runs (s): "
        + "; ".join(f"{t} {n}: {', '.join(f'{s:.2f}' for s in times[t, n])}" for t in tools for n in counts)
    )
    if "debship" in tools:
        print_goals(counts, tools, med)


def print_goals(counts: list[int], tools: list[str], med: dict) -> None:
    ratio = med["debship", counts[-1]] / med["debship", counts[0]]
    print(f"\nGoal: {counts[-1]} hosts <= 2.5x one host: {'met' if ratio <= 2.5 else 'MISSED'} ({ratio:.2f}x).")
    for rival in (t for t in tools if t != "debship"):
        if rival.startswith("debship"):
            continue
        slower = [n for n in counts if med["debship", n] >= med[rival, n]]
        print(
            f"Goal: faster than {TOOLS[rival][0]} at {', '.join(map(str, counts))} hosts: "
            + (f"MISSED at {', '.join(map(str, slower))}" if slower else "met")
        )


def print_overhead(title: str, stats: dict[str, list[HostStats]]) -> None:
    """Round trips and seconds per host, median over hosts and runs, one row per case."""
    print(f"\n### {title}\n")
    print(
        "| case | SSH connects | commands (run) | SFTP puts | round trips | apt-get install s "
        "| install step s | host total s | overhead s (total - apt-get) |\n|---|" + "---:|" * 8
    )
    for case, rows in stats.items():
        if not rows:
            continue
        med = lambda f, rows=rows: statistics.median(f(r) for r in rows)  # noqa: E731
        trips = [med(lambda r, k=k: r.trips[k]) for k in ("connect", "run", "put")]
        print(
            f"| {case} | {trips[0]:g} | {trips[1]:g} | {trips[2]:g} | {sum(trips):g} | {med(lambda r: r.apt):.2f} "
            f"| {med(lambda r: r.install_step):.2f} | {med(lambda r: r.total):.2f} | {med(lambda r: r.overhead):.2f} |"
        )
    print(
        "\nGoal: overhead <= 1.0 s per host beyond apt-get install: "
        + ", ".join(
            f"{case} {'met' if statistics.median(r.overhead for r in rows) <= 1.0 else 'MISSED'}"
            for case, rows in stats.items()
            if rows
        )
        + "."
    )


def bench_lifecycle(pkgs: tuple[PackageInfo, PackageInfo], lower: Path, repeat: int, work: Path) -> None:
    """debship on one host: first install, upgrade to the next version, then the same again (no-op)."""
    cases: dict[str, list[HostStats]] = {}
    for _ in range(repeat):
        with contextlib.ExitStack() as stack:
            hosts = make_hosts(stack, lower, 1, work)
            for case, pkg in zip(("first install", "upgrade", "no-op (same package again)"), (*pkgs, pkgs[1])):
                run_dir = Path(tempfile.mkdtemp(prefix="lifecycle-", dir=work))
                argv, env = _tools.debship_command(pkg.path, hosts, run_dir)
                run = _tools.run_timed(argv, env, run_dir, f"debship {case}")
                check_installed(hosts, pkg.name, pkg.version, f"debship {case}")
                cases.setdefault(case, []).extend(host_stats(run_dir, run.output))
    print_overhead(f"debship round trips and overhead per host, one host, median of {repeat}", cases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; medians are printed (default 3)")
    ap.add_argument("--counts", default="1,8,16", help="host counts, comma-separated (default 1,8,16)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--mb", type=int, default=50, help="size of the sftp upload in MB (default 50)")
    ap.add_argument(
        "--only",
        choices=("compare", "trips", "sftp", "cost"),
        help="run one part (default: compare, trips, sftp; cost only when asked)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/ship.py needs root (overlay mounts, chroot, unshare), as the tests do")
    tools = [t for t in args.tools.split(",") if t]
    if any(t not in TOOLS for t in tools) or (set(tools) - {"debship"} and not _tools.BENCH_VENV.is_dir()):
        raise SystemExit(f"--tools takes {','.join(TOOLS)}; Ansible and pyinfra need `bash tools/bench-setup.sh`")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: hosts removed
    lower = bench_root()
    with tempfile.TemporaryDirectory(prefix="debship-bench-ship-") as tmp:
        run_parts(args, tools, lower, Path(tmp))
    print(f"\nTools: {', '.join(f'{k} {v}' for k, v in _tools.versions().items())}.")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    argv = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"(`{argv}`: {os.cpu_count()} CPUs, load average {load} at the end)")


def run_parts(args, tools: list[str], lower: Path, work: Path) -> None:
    pkgs = (
        read_package(build_deb(REPO, work / "dist").path),
        read_package(build_deb(REPO, work / "dist", version="1.0.1").path),
    )
    if args.only in (None, "compare"):
        counts = [int(c) for c in args.counts.split(",")]
        stats = bench_compare(pkgs[0], lower, counts, tools, args.repeat, work)
        print_overhead(
            "debship round trips and overhead per host, first install, median over hosts and runs",
            {f"{n} host(s) in parallel": stats[n] for n in counts},
        )
    if args.only in (None, "trips"):
        bench_lifecycle(pkgs, lower, args.repeat, work)
    if args.only in (None, "sftp"):
        bench_sftp(lower, args.mb, args.repeat, work)
    if args.only == "cost":
        bench_cost(pkgs[0], lower, [int(c) for c in args.counts.split(",")], tools, args.repeat, work)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the ExitStacks have removed every host by now
        sys.exit("bench/ship.py: interrupted; all hosts removed")
