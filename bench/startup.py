"""The whole `build-deb` command on the sample project, start-up included: one or more
installs of debship side by side, runs interleaved, min and median wall and CPU time.

    python3 bench/startup.py [--repeat N] BUILD_DEB [BUILD_DEB ...]

Each BUILD_DEB is a `build-deb` executable (e.g. two venvs, before and after a change).
Two floor rows, timed in the same interleaved rounds, use the first install's own Python
(the one its `#!` line names): its bare start-up, and start-up plus `import click` (what any
click command pays).
SOURCE_DATE_EPOCH is set; PYTHONDONTWRITEBYTECODE is removed (it would make Python compile
debship's modules on every run, which no installed copy does).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(argv: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interpreter(exe: str) -> list[str]:
    """The command in ``exe``'s ``#!`` line (a venv's python, /usr/bin/python3, or env python3)."""
    with open(exe, "rb") as f:
        first = f.readline().decode()
    if not first.startswith("#!"):
        sys.exit(f"{exe}: no #! line; pass a build-deb console script")
    return shlex.split(first[2:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=25, help="timed runs per executable (default 25)")
    parser.add_argument("exes", nargs="+", metavar="BUILD_DEB")
    args = parser.parse_args()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    python = interpreter(args.exes[0])
    with tempfile.TemporaryDirectory(prefix="debship-startup-") as out:
        commands = {exe: [exe, "--project", str(REPO), "--out", out] for exe in args.exes}
        commands["floor: python -c pass"] = [*python, "-c", "pass"]
        commands["floor: python -c 'import click'"] = [*python, "-c", "import click"]
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for argv in commands.values():  # one warm-up each: fills the caches
            one_run(argv, env)
        for _ in range(args.repeat):
            for label, argv in commands.items():
                results[label].append(one_run(argv, env))
    print(f"{args.repeat} runs each, interleaved, {os.cpu_count()} CPUs\n")
    print("| build-deb | wall min | wall median | CPU min | CPU median |")
    print("|---|---:|---:|---:|---:|")
    for label, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"| {label} | {min(walls) * 1000:.0f} ms | {statistics.median(walls) * 1000:.0f} ms "
            f"| {min(cpus) * 1000:.0f} ms | {statistics.median(cpus) * 1000:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
