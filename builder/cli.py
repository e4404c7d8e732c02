"""Command-line entry points. Each command parses options and calls one library function;
this is the only place a ``DebshipError`` becomes a message and an exit code."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import click

from . import __version__
from .build import build_deb as build_deb_lib
from .build import list_plan
from .debfile import COMPRESSIONS
from .errors import DebshipError


def reports_errors(func):
    """Turn a foreseen failure into one line on stderr and its exit code; no traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DebshipError as e:
            ctx = click.get_current_context()
            message = " ".join(str(e).splitlines())  # always one line
            click.echo(f"{ctx.info_name}: error: {message}", err=True)
            ctx.exit(e.exit_code)
    return wrapper


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", "project", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Project folder holding pyproject.toml (or debship.toml) and the bundle.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the .deb into  [default: <project>/dist]")
@click.option("--version", "version", default=None,
              help="Package version, overriding the config and git (PEP 440 and semver are converted).")
@click.option("--compression", type=click.Choice(COMPRESSIONS), default="xz", show_default=True,
              help="Compression of the control and data archives.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing the .deb.")
@click.option("--list", "listing", is_flag=True, help="Show what would be installed where, without building.")
@click.version_option(__version__, "-V", "--debship-version", prog_name="debship",
                      message="%(prog)s %(version)s")
@reports_errors
def build_deb(project: Path, out: Path | None, version: str | None, compression: str,
              as_json: bool, listing: bool) -> None:
    """Bundle the project's units/, scripts/ and configs/ into one reproducible .deb.

    On success the last line printed is the path of the .deb.
    """
    if listing:
        _print_plan(*list_plan(project, version))
        return
    if compression == "zstd":
        click.echo("build-deb: warning: zstd needs dpkg >= 1.21.18 on the host "
                   "(Debian 12, Ubuntu 22.04 or newer); use xz for older hosts", err=True)
    built = build_deb_lib(project, out, version, compression)
    if as_json:
        click.echo(json.dumps(built.as_dict(), sort_keys=True))
        return
    click.echo(f"built {built.name} {built.version} ({built.architecture}), "
               f"{built.size} bytes, sha256 {built.sha256}")
    click.echo(os.path.relpath(built.path) if not Path(os.path.relpath(built.path)).parts[0] == ".."
               else str(built.path))


def _print_plan(spec, plan) -> None:
    click.echo(f"{spec.name} {spec.version} ({spec.architecture})")
    width = max((len(e.dest) for e in plan.entries), default=0)
    for e in plan.entries:
        src = os.path.relpath(e.src, spec.project_dir)
        click.echo(f"  {e.dest:<{width}}  {e.mode:04o}  {e.kind:<8}  {src}")
    for u in plan.units:
        click.echo(f"  unit {u.name}: enable={'yes' if u.enable else 'no'} start={'yes' if u.start else 'no'} "
                   f"on-upgrade={u.on_upgrade}")
    click.echo(f"  startup: {plan.startup or 'off'}")
