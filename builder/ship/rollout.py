"""How a fleet is rolled out, as pure functions: batch sizes from ``--batch 1,10%,100%``, the
failure budget from ``--max-fail 2`` or ``--max-fail 10%``, and whether a run must halt.

Nothing here touches a host; ``fleet`` runs the batches these functions plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Amount:
    """A count (``3``) or a percentage (``25%``)."""

    value: float
    percent: bool = False

    def of(self, total: int) -> int:
        """This amount of ``total`` items: a percentage rounds down, but never below 1."""
        if not self.percent:
            return int(self.value)
        return max(1, int(total * self.value / 100))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def parse_amount(text: str, option: str) -> Amount:
    m = _AMOUNT.match(text)
    if not m or (not m.group(2) and "." in m.group(1)):
        raise UsageError(f"{option} {text!r}: give a whole number of hosts (3) or a percentage (25%)")
    value, percent = float(m.group(1)), bool(m.group(2))
    if percent and not 0 < value <= 100:
        raise UsageError(f"{option} {text!r}: a percentage must be above 0% and at most 100%")
    return Amount(value, percent)


def parse_batches(text: str | int) -> tuple[Amount, ...]:
    """``--batch``: comma-separated counts and percentages, ``1,10%,100%``; ``N`` alone keeps
    its old meaning (batches of N); ``0`` or empty: everything in one batch."""
    text = str(text).strip()
    if text in ("", "0"):
        return ()
    steps = tuple(parse_amount(part, "--batch") for part in text.split(","))
    if any(s.value == 0 for s in steps):
        raise UsageError(f"--batch {text!r}: a batch of 0 hosts never finishes; use 1 or more (or 0 alone: one batch)")
    return steps


def plan_batches(total: int, steps: tuple[Amount, ...]) -> list[int]:
    """The size of each batch for ``total`` hosts: each step in turn, a percentage taken of all
    the hosts (rounded down, at least 1), the last step repeating until every host is in a batch."""
    if total <= 0:
        return []
    if not steps:
        return [total]
    sizes: list[int] = []
    left, i = total, 0
    while left > 0:
        size = min(left, steps[min(i, len(steps) - 1)].of(total))
        sizes.append(size)
        left -= size
        i += 1
    return sizes


def split(items: list, sizes: list[int]) -> list[list]:
    """``items`` cut into consecutive batches of ``sizes``."""
    out, start = [], 0
    for size in sizes:
        out.append(items[start : start + size])
        start += size
    return out


def parse_max_fail(text: str | int | None) -> Amount | None:
    """``--max-fail``: a count or a percentage; ``0`` (or nothing): never halt."""
    if text is None or str(text).strip() in ("", "0", "0%"):
        return None
    return parse_amount(str(text), "--max-fail")


def over_budget(
    budget: Amount | None, failed_in_batch: int, batch_size: int, failed_total: int, total: int
) -> str | None:
    """Why the run halts now, or None.  A count is a budget for the whole run: halt once that
    many hosts failed.  A percentage is checked per batch (so a one-host canary that fails
    halts the run) and for the run (so failures spread thinly over many batches still add up):
    halt once that share of the batch, or of all the hosts, failed."""
    if budget is None or failed_total == 0:
        return None
    if not budget.percent:
        if failed_total >= budget.value:
            return f"{failed_total} host(s) failed (--max-fail {budget})"
        return None
    if batch_size and failed_in_batch * 100 >= budget.value * batch_size:
        return f"{failed_in_batch} of {batch_size} host(s) in this batch failed (--max-fail {budget})"
    if failed_total * 100 >= budget.value * total:
        return f"{failed_total} of {total} host(s) failed (--max-fail {budget})"
    return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration(text: str | float, option: str) -> float:
    """``30``, ``30s``, ``5m``, ``1h`` -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise UsageError(f"{option} {text!r}: give a duration such as 30s, 5m or 1h (a plain number is seconds)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
