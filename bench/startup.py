"""The whole `build-deb` command on the sample project, start-up included: one or more
installs of debship side by side, runs interleaved, min and median wall and CPU time.

    python3 bench/startup.py [--repeat N] BUILD_DEB [BUILD_DEB ...]

Each BUILD_DEB is a `build-deb` executable (e.g. two venvs, before and after a change).
SOURCE_DATE_EPOCH is set; PYTHONDONTWRITEBYTECODE is removed (it would make Python compile
debship's modules on every run, which no installed copy does).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(exe: str, out: str, env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([exe, "--project", str(REPO), "--out", out], env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=25, help="timed runs per executable (default 25)")
    parser.add_argument("exes", nargs="+", metavar="BUILD_DEB")
    args = parser.parse_args()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    results: dict[str, list[tuple[float, float]]] = {exe: [] for exe in args.exes}
    with tempfile.TemporaryDirectory(prefix="debship-startup-") as out:
        for exe in args.exes:  # one warm-up each: fills the caches
            one_run(exe, out, env)
        for _ in range(args.repeat):
            for exe in args.exes:
                results[exe].append(one_run(exe, out, env))
    print(f"{args.repeat} runs each, interleaved, {os.cpu_count()} CPUs\n")
    print("| build-deb | wall min | wall median | CPU min | CPU median |")
    print("|---|---:|---:|---:|---:|")
    for exe, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"| {exe} | {min(walls) * 1000:.0f} ms | {statistics.median(walls) * 1000:.0f} ms "
              f"| {min(cpus) * 1000:.0f} ms | {statistics.median(cpus) * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
