"""Rollout planning (builder/ship/rollout.py): batch sizes and the failure budget, table-driven."""

from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.ship.rollout import Amount, over_budget, parse_batches, parse_max_fail, plan_batches, split


@pytest.mark.parametrize(
    "spec, total, sizes",
    [
        ("0", 6, [6]),  # one batch (the default)
        ("", 3, [3]),
        ("2", 5, [2, 2, 1]),  # a plain N: batches of N, as before
        ("1,50%,100%", 6, [1, 3, 2]),  # canary, half of all the hosts, then the rest
        ("1,10%,100%", 16, [1, 1, 14]),  # 10% of 16 rounds down to 1
        ("1,25%,100%", 16, [1, 4, 11]),
        ("1,10%", 25, [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]),  # the last step repeats
        ("10%", 5, [1, 1, 1, 1, 1]),  # a percentage never rounds down to 0
        ("1,2,3", 3, [1, 2]),  # steps past the hosts are not used
        ("5,100%", 3, [3]),  # a step larger than the fleet takes what is left
        ("33.5%", 10, [3, 3, 3, 1]),
        ("1,25%,100%", 0, []),
    ],
)
def test_plan_batches(spec, total, sizes):
    assert plan_batches(total, parse_batches(spec)) == sizes
    assert sum(sizes) == total


def test_split_keeps_the_host_order():
    assert split(list("abcdef"), [1, 3, 2]) == [["a"], ["b", "c", "d"], ["e", "f"]]


@pytest.mark.parametrize("text", ["x", "1,,2", "-1", "1.5", "0%", "150%", "1,0", "%"])
def test_bad_batch_is_a_usage_error_naming_the_option(text):
    with pytest.raises(UsageError, match=r"^--batch "):
        parse_batches(text)


@pytest.mark.parametrize(
    "text, amount",
    [
        (None, None),
        ("0", None),
        (0, None),
        ("3", Amount(3)),
        ("25%", Amount(25, True)),
        (" 2 ", Amount(2)),
    ],
)
def test_parse_max_fail(text, amount):
    assert parse_max_fail(text) == amount


@pytest.mark.parametrize("text", ["ten", "1.5", "101%", "-2"])
def test_bad_max_fail_is_a_usage_error(text):
    with pytest.raises(UsageError, match=r"^--max-fail .*(whole number of hosts \(3\) or a percentage|at most 100%)"):
        parse_max_fail(text)


@pytest.mark.parametrize(
    "budget, in_batch, size, total_failed, total, halts",
    [
        (None, 3, 3, 3, 3, False),  # no budget: never halt
        ("1", 1, 3, 1, 6, True),  # a count: once that many failed in the run
        ("2", 1, 3, 1, 6, False),
        ("2", 1, 3, 2, 6, True),  # ... counted over batches (1 earlier + 1 now)
        ("2", 0, 3, 2, 6, True),  # the budget stays spent on a clean batch
        ("10%", 1, 1, 1, 100, True),  # a failed one-host canary is 100% of its batch
        ("10%", 1, 20, 1, 100, False),  # 5% of a batch, 1% of the run
        ("10%", 2, 20, 2, 100, True),  # 10% of the batch
        ("10%", 1, 25, 10, 100, True),  # 4% of this batch, but 10% of the run
        ("10%", 1, 25, 9, 100, False),
        ("50%", 1, 3, 1, 6, False),
        ("50%", 2, 3, 2, 6, True),
        ("100%", 2, 3, 2, 6, False),
        ("100%", 3, 3, 3, 6, True),
    ],
)
def test_over_budget(budget, in_batch, size, total_failed, total, halts):
    reason = over_budget(parse_max_fail(budget), in_batch, size, total_failed, total)
    assert bool(reason) == halts
    if halts:
        assert f"(--max-fail {budget})" in reason


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "1,x"], "ship: error: --batch 'x': give a whole number of hosts (3) or a percentage (25%)"),
        (
            ["--max-fail", "lots"],
            "ship: error: --max-fail 'lots': give a whole number of hosts (3) or a percentage (25%)",
        ),
        (
            ["--max-fail", "1", "--max-failures", "1"],
            "ship: error: --max-fail and --max-failures are the same option; give one of them",
        ),
    ],
)
def test_bad_rollout_options_are_one_line_before_any_host(args, message):
    from builder.cli import ship
    from tests.harness.helpers import cli_runner

    r = cli_runner().invoke(ship, ["--rollback", "--package", "p", "--host", "127.0.0.1:1", *args])
    assert r.exit_code == 2 and r.stderr.strip() == message and r.stdout == ""


@pytest.mark.parametrize("text, seconds", [("0", 0), ("30", 30), ("30s", 30), ("1.5m", 90), ("1h", 3600), (12, 12)])
def test_parse_duration(text, seconds):
    from builder.ship.rollout import parse_duration

    assert parse_duration(text, "--soak") == seconds


@pytest.mark.parametrize("text", ["soon", "-3s", "5d", "1m30s"])
def test_bad_duration_is_a_usage_error(text):
    from builder.ship.rollout import parse_duration

    with pytest.raises(UsageError, match=r"^--soak .*give a duration such as 30s, 5m or 1h"):
        parse_duration(text, "--soak")


# --- a ship cut off after its install (the history's "begin" line) ----------------------------

CUT = "2026-12-01T10:00:00Z ship 1.0.0\n2026-12-01T11:00:00Z begin 1.1.0 1.0.0\n"


@pytest.mark.parametrize(
    "history, cut",
    [
        ("", None),
        ("2026-12-01T10:00:00Z ship 1.0.0\n", None),
        (CUT, ("1.1.0", "1.0.0")),
        ("2026-12-01T11:00:00Z begin 1.0.0 -\n", ("1.0.0", None)),
        (CUT + "2026-12-01T11:00:09Z ship 1.1.0\n", None),  # verified and recorded
        (CUT + "2026-12-01T11:00:09Z rollback 1.0.0\n", None),  # failed and rolled back
    ],
)
def test_unfinished_reads_the_last_begin(history, cut):
    from builder.ship.store import unfinished

    assert unfinished(history) == cut


def test_begin_lines_are_not_versions_the_host_went_through():
    from builder.ship.store import version_stack

    assert version_stack(CUT + "2026-12-01T11:00:09Z ship 1.1.0\n") == ["1.0.0", "1.1.0"]
    assert version_stack(CUT) == ["1.0.0"]
