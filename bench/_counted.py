"""The debship CLI with every SSH round trip of builder.ship.ssh.SSHConnection recorded (bench code only).

    python bench/_counted.py TRIPS.json ship DEB --host ... [ship options]

Wraps Connection.reconnect (one SSH handshake + auth), .run (one exec channel: a command and its
exit status; sha256() is one too) and .put (one SFTP upload: open, pipelined writes, close,
rename), then runs `debship` with the remaining arguments.  At exit, TRIPS.json holds one record
per call: {"host", "kind": connect|run|put, "what", "seconds"}.  The library is not changed.
"""

from __future__ import annotations

import atexit
import functools
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from builder.cli import main  # noqa: E402
from builder.ship import ssh  # noqa: E402

RECORDS: list[dict] = []


def _what(kind: str, args: tuple) -> str:
    if kind == "run":
        return shlex.join(args[0])[:4000]  # long enough to reach apt-get inside its logging wrapper
    return str(args[1]) if kind == "put" else ""


def _counted(kind: str, func):
    @functools.wraps(func)
    def wrapper(self, *args, **kw):
        t0 = time.perf_counter()
        try:
            return func(self, *args, **kw)
        finally:  # list.append is atomic: the fleet's threads may all record at once
            RECORDS.append(
                {
                    "host": self.name,
                    "kind": kind,
                    "what": _what(kind, args),
                    "seconds": round(time.perf_counter() - t0, 4),
                }
            )

    return wrapper


def _dump(path: Path) -> None:
    path.write_text(json.dumps(RECORDS, indent=0))


if __name__ == "__main__":
    out = Path(sys.argv.pop(1))
    for kind, name in (("connect", "reconnect"), ("run", "run"), ("put", "put")):
        setattr(ssh.SSHConnection, name, _counted(kind, getattr(ssh.SSHConnection, name)))
    atexit.register(_dump, out)
    sys.argv[0] = "debship"
    main()
