"""What `ship` shows on a terminal (never with --json, never when the output is a pipe or file).

One host: its step lines as in plain output, and while the package uploads a
progress bar with the bytes sent, the rate and the time left (click's own
``progressbar``: click is already the CLI's dependency, it sizes the bar to
the terminal and redraws only what changed; nothing new to install).  Its own
time left needs a second of progress first, so the rate and time left shown are
computed here from the bytes sent.  Many
hosts: one line of counts redrawn in place (done, running, failed), a failed
step's line above it as it happens, then the summary table.  click has no
live status line, so that line is drawn here with a carriage return.

Events and upload callbacks arrive from the worker threads; one lock keeps the
lines whole.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import click

MIB = 1 << 20


class TerminalView:
    def __init__(self, hosts: int, line: Callable[[object], None]):
        self.total, self.many, self._line = hosts, hosts > 1, line
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._done = self._failed = 0
        self._bar = None
        self._bar_start = 0.0
        self._drawn = False

    # --- the ship's callbacks ----------------------------------------------------------------
    def event(self, e) -> None:
        with self._lock:
            if not self.many:
                if e.status != "start":
                    self._end_bar()
                    self._line(e)
                return
            if e.status == "start":
                self._running.add(e.host)
            elif e.status == "fail":
                self._clear()
                self._line(e)
            self._draw()

    def upload(self, host: str, sent: int, total: int) -> None:
        if self.many:
            return
        with self._lock:
            if self._bar is None:
                self._bar = click.progressbar(
                    length=max(total, 1),
                    label=f"[{host}] upload  ",
                    show_eta=False,
                    show_percent=True,
                    item_show_func=lambda text: text,
                    width=24,
                )
                self._bar.__enter__()
                self._bar_start, self._sent = time.monotonic(), 0
            elapsed = time.monotonic() - self._bar_start
            text = f"{sent / MIB:.1f}/{total / MIB:.1f} MiB"
            # the first writes only fill buffers: no rate until 0.2 s have passed, or the upload is done
            if sent and elapsed > 0 and (elapsed >= 0.2 or sent >= total):
                rate = sent / elapsed
                left = math.ceil((total - sent) / rate)
                text += f", {rate / MIB:.1f} MiB/s, {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"
            self._bar.update(sent - self._sent, text)
            self._sent = sent
            if sent >= total:
                self._end_bar()

    def done(self, result) -> None:
        if not self.many:
            return
        with self._lock:
            self._running.discard(result.host)
            self._done += 1
            self._failed += not result.ok
            self._draw()

    def close(self) -> None:
        """Leave the last count on its own line (the summary table follows)."""
        with self._lock:
            self._end_bar()
            if self._drawn:
                click.echo("")
                self._drawn = False

    # --- drawing -----------------------------------------------------------------------------
    def _draw(self) -> None:
        click.echo(
            f"\r\x1b[K{self._done}/{self.total} done, {len(self._running)} running, {self._failed} failed", nl=False
        )
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            click.echo("\r\x1b[K", nl=False)
            self._drawn = False

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()
            self._bar = None
