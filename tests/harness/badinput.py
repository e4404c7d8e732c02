"""Checking a refusal of bad input through the real ``build-deb`` command (the bad-input table
and the tests of each input's own checks share it)."""

from __future__ import annotations

from pathlib import Path

from builder.cli import build_deb
from tests.harness.helpers import cli_runner

CONFIG, BUNDLE, WRITE = 2, 3, 4


def refused(project: Path, *expect: str, code: int, out: Path | None = None, args: tuple = ()) -> str:
    """Run build-deb on ``project`` (with ``args``) and check it refused as a bad input must;
    return the message."""
    out = out or project.parent / "out"
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"unexpected exception: {result.exception!r}"
    )
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("build-deb: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for text in expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not out.is_dir() or not any(out.iterdir()), "something was written to --out"
    return lines[0]


def builds(project: Path) -> Path:
    out = project.parent / "out"
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])
