"""SSH round trips and wall time of one first-install `ship` to a fresh loopback host, for two
checkouts of debship side by side (e.g. main and a branch), alternating, N repetitions.

    sudo .venv/bin/python bench/trips_vs.py OLD_CHECKOUT NEW_CHECKOUT [--repeat 3]

Each checkout ships the same .deb (this repository's sample, built once) through its own
bench/_counted.py, which records every Connection.run/put.  Prints a markdown table; nothing is
asserted (see DESIGN.md, Test tiers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from builder.build import build_deb  # noqa: E402
from hostlab.rootfs import Root, cached_root  # noqa: E402
from hostlab.sshhost import SSHHost  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")
    work = Path(tempfile.mkdtemp(prefix="trips-vs-"))
    deb = build_deb(REPO, work / "dist", version="1.0.0").path
    rows: dict[str, list[tuple[float, int, int]]] = {a.old: [], a.new: []}
    for _ in range(a.repeat):
        for checkout in (a.old, a.new):
            with Root(cached_root(), workdir=work) as root, SSHHost(root, workdir=work) as host:
                trips = work / "trips.json"
                t0 = time.perf_counter()
                r = subprocess.run(
                    [
                        sys.executable,
                        f"{checkout}/bench/_counted.py",
                        str(trips),
                        "ship",
                        str(deb),
                        "--host",
                        host.address,
                        *host.ship_args(),
                    ],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "SSH_AUTH_SOCK": ""},
                    cwd=checkout,
                )
                wall = time.perf_counter() - t0
                if r.returncode != 0:
                    sys.exit(f"{checkout}: ship failed:\n{r.stdout}{r.stderr}")
                recs = json.loads(trips.read_text())
                rows[checkout].append(
                    (wall, sum(x["kind"] == "run" for x in recs), sum(x["kind"] == "put" for x in recs))
                )
    print(f"| checkout | wall s (median of {a.repeat}) | commands (run) | uploads (put) |")
    print("|---|---|---|---|")
    for checkout, rs in rows.items():
        print(f"| {checkout} | {statistics.median(w for w, _, _ in rs):.2f} | {rs[0][1]} | {rs[0][2]} |")


if __name__ == "__main__":
    main()
