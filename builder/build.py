"""``build-deb`` as one library call: config → plan → control files → .deb."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import config, debfile, layout
from . import plan as planning
from .errors import BuildError, ConfigError
from .plan import Plan

if TYPE_CHECKING:
    from . import control
    from .debinfo import BuiltDeb


def build_deb(
    project_dir: Path,
    out_dir: Path | None = None,
    version: str | None = None,
    compression: str = "xz",
    warn: Callable[[str], None] | None = None,
) -> BuiltDeb:
    """Build the project's bundle into ``out_dir`` (default ``<project>/dist``); return what was written.

    ``warn`` is called with each warning (a setting systemd or lintian frowns on but
    that builds a working package) before anything is written."""
    spec = config.load(Path(project_dir), version)
    plan = planning.build(spec)
    for message in (*spec.warnings, *plan.warnings):
        if warn is not None:
            warn(message)
    mtime = source_date_epoch(spec.project_dir, plan)
    md5, sizes = _digests(plan)
    from . import control  # here, not at the top: jinja2 is the slowest import and only building needs it

    files = control.render(spec, plan, md5, sizes, mtime)
    out = Path(out_dir) if out_dir is not None else spec.project_dir / "dist"
    _make_out(out)
    return debfile.write(
        control_members(files),
        data_members(plan, files),
        out,
        name=spec.name,
        version=spec.version,
        architecture=spec.architecture,
        compression=compression,
        mtime=mtime,
        unlisted_dirs=layout.HOST_DIRS,
    )


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(
            f"--out {out}: cannot create the output folder ({e.strerror or e}); "
            "pass --out with a folder you can write to"
        ) from e


def list_plan(project_dir: Path, version: str | None = None) -> tuple[config.PackageSpec, Plan]:
    """What would go where, without building (``build-deb --list``)."""
    spec = config.load(Path(project_dir), version)
    return spec, planning.build(spec)


def control_members(files: control.ControlFiles) -> list[debfile.Member]:
    members = [
        debfile.Member("control", 0o644, data=files.control.encode()),
        debfile.Member("md5sums", 0o644, data=files.md5sums.encode()),
    ]
    if files.conffiles:
        members.append(debfile.Member("conffiles", 0o644, data=files.conffiles.encode()))
    members += [debfile.Member(name, 0o755, data=text.encode()) for name, text in files.scripts.items()]
    return members


def data_members(plan: Plan, files: control.ControlFiles) -> list[debfile.Member]:
    members = [debfile.Member(e.dest.lstrip("/"), e.mode, source=e.src) for e in plan.entries]
    members += [debfile.Member(p.lstrip("/"), 0o644, data=b) for p, b in files.docs.items()]
    return members


def _digests(plan: Plan) -> tuple[dict, dict]:
    md5, sizes = {}, {}
    for e in plan.entries:
        h = hashlib.md5()
        with open(e.src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        md5[e.dest], sizes[e.dest] = h.hexdigest(), e.src.stat().st_size
    return md5, sizes


def source_date_epoch(project_dir: Path, plan: Plan) -> int:
    """SOURCE_DATE_EPOCH if set, else the time of the last commit, else the newest input file."""
    from .reproducible import epoch_from_env  # here: only a build reads it

    env = epoch_from_env(ConfigError)
    if env is not None:
        return env
    import subprocess  # only without SOURCE_DATE_EPOCH: a build that has it starts faster

    try:
        proc = subprocess.run(
            ["git", "-C", str(project_dir), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return int(proc.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return max((int(e.src.stat().st_mtime) for e in plan.entries), default=0)
