"""Rendering the control files, maintainer scripts and docs of a package.

Templates are jinja2 with ``StrictUndefined``: a template that names a value
we do not give fails loudly.  A project may override any template by putting
its own ``debian/<name>.j2`` next to its config; the built-in ones (this
repository's ``debian/``) are used otherwise.  Nothing here writes to the package or
the project; rendered text and compiled templates go to the build cache (``cache``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import cache
from .config import PackageSpec
from .errors import BuildError
from .layout import UNIT_DIR, Layout
from .manifest import Manifest
from .plan import Plan, Unit

if TYPE_CHECKING:
    import jinja2

SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
# deb822: a field value line may not be empty and may not start a new field.
FIELD_RE = re.compile(r"^[A-Za-z0-9][!-9;-~]*: \S.*$")


@dataclass(frozen=True)
class ControlFiles:
    control: str
    md5sums: str
    conffiles: str
    scripts: dict  # name -> text, only the non-empty ones
    docs: dict  # host path -> bytes (copyright, changelog)


def render(spec: PackageSpec, plan: Plan, md5: dict, sizes: dict, mtime: int) -> ControlFiles:
    """All control-area files and generated docs for ``plan``.

    ``md5`` and ``sizes`` map each entry's host path to its digest and size
    (read once by the caller, which owns the I/O).
    """
    templates = Templates(spec.project_dir)
    docs = {**_docs(templates, spec, mtime), **manifest(spec, plan), **lintian_overrides(spec, plan)}
    doc_md5 = {p: hashlib.md5(b).hexdigest() for p, b in docs.items()}
    all_md5 = {**md5, **doc_md5}
    all_sizes = {**sizes, **{p: len(b) for p, b in docs.items()}}
    context = script_context(spec, plan)
    control = templates.render(
        "control.j2", {**_control_context(spec, plan), "installed_size": installed_size(all_sizes)}
    )
    check_control(control)
    return ControlFiles(
        control=control,
        md5sums="".join(f"{all_md5[p]}  {p.lstrip('/')}\n" for p in sorted(all_md5)),
        conffiles="".join(f"{p}\n" for p in plan.conffiles),
        scripts=render_scripts(context, templates),
        docs=docs,
    )


def script_context(spec: PackageSpec, plan: Plan) -> dict:
    """The variables every maintainer-script template gets."""
    return scripts_context(
        spec.name,
        spec.version,
        plan.units,
        plan.startup,
        conffiles=plan.conffiles,
        unit_files=any(e.kind == "unit" for e in plan.entries),
        py_files=sorted(e.dest for e in plan.entries if e.dest.endswith(".py")),
        unit_dir=spec.install.get("units", UNIT_DIR),
    )


def scripts_context(
    name: str,
    version: str,
    units: Sequence[Unit],
    startup: str | None,
    *,
    conffiles: Sequence[str] = (),
    unit_files: bool | None = None,
    py_files: Sequence[str] = (),
    unit_dir: str = UNIT_DIR,
) -> dict:
    """The maintainer-script context: the host paths, and the unit names each systemd step acts
    on, decided here so that the templates only loop (see the header of debian/postinst.j2).

    ``conffiles`` and ``units`` are also what an upgrade compares with the installed version's
    (decided on the host: see debian/preinst.j2); ``unit_files``: the package installs anything
    under the unit folder (drop-ins too), so systemd must reload; ``py_files``: the package's
    Python files, which postinst byte-compiles and whose byte-code prerm removes (as dh_python3's
    py3compile and py3clean do)."""
    layout = Layout(name).script_context()
    dirs = [unit_dir] + [d for d in layout.pop("unit_dirs") if d != unit_dir]
    return {
        "name": name,
        "version": version,
        "units": list(units),
        "startup": startup,
        "conffiles": sorted(conffiles),
        "unit_files": bool(units) if unit_files is None else unit_files,
        "py_files": list(py_files),
        "py_dirs": sorted({f.rsplit("/", 1)[0] for f in py_files}),
        "unit_dirs": dirs,
        "shipped_units": sorted(u.name for u in units),
        **layout,
        **unit_sets(units),
    }


def render_scripts(context: dict, templates: Templates | None = None) -> dict:
    """The non-empty maintainer scripts for ``context`` (default templates: debship's own)."""
    templates = templates or Templates(Path("/nonexistent"))
    return {s: text for s in SCRIPTS if (text := templates.render(f"{s}.j2", context)).strip()}


def unit_sets(units: Sequence[Unit]) -> dict:
    """Sorted unit names per maintainer-script step, as dh_installsystemd groups them."""
    ordered = sorted(units, key=lambda u: u.name)
    plain = [u for u in ordered if not u.template]
    names = lambda us: [u.name for u in us]  # noqa: E731
    return {
        "plain": names(plain),
        "enable": names(u for u in ordered if u.has_install and u.enable),
        "keep": names(u for u in plain if u.has_install and not u.enable),
        "restart": names(u for u in plain if u.start and u.on_upgrade == "restart"),
        "try_restart": names(u for u in plain if not u.start and u.on_upgrade == "restart"),
        "start": names(u for u in plain if u.start and u.on_upgrade != "restart"),
        "stop_on_upgrade": names(u for u in plain if u.on_upgrade == "stop"),
        "stop_on_remove": names(plain),
        "purge": sorted(names(u for u in ordered if u.has_install and (u.enable or not u.template))),
    }


def _control_context(spec: PackageSpec, plan: Plan) -> dict:
    depends = list(spec.depends)
    if plan.startup and not any(d.split()[0] == "python3" for d in depends):
        depends.append("python3")  # postinst runs startup.py with the system python3
    return {
        "name": spec.name,
        "version": spec.version,
        "architecture": spec.architecture,
        "maintainer": spec.maintainer,
        "depends": depends,
        "section": spec.section,
        "priority": spec.priority,
        "homepage": spec.homepage,
        "description": spec.description,
        "long_description": _long_description(spec.long_description),
    }


def _long_description(text: str) -> list[str]:
    """Wrap paragraphs to 72 columns; a blank line between paragraphs becomes ' .'."""
    lines: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if lines:
            lines.append(".")
        lines += _wrap(para.split(), 72) or ["."]
    return lines


def _wrap(words: list[str], width: int) -> list[str]:
    """Greedy wrap at spaces only: a word longer than ``width`` (a URL) keeps a line of its own,
    whole (textwrap would cut it, and costs a millisecond to import)."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def installed_size(sizes: dict) -> int:
    """KiB as dpkg-gencontrol counts: each file rounded up, each folder 1."""
    folders = {p.rsplit("/", i)[0] for p in sizes for i in range(1, p.count("/"))}
    return sum(-(-s // 1024) for s in sizes.values()) + len(folders)


def check_control(text: str) -> None:
    """Refuse a control file dpkg would refuse: every line a field or a continuation."""
    for line in text.rstrip("\n").split("\n"):
        if line.startswith(" ") and line.strip():
            continue
        if not FIELD_RE.match(line):
            raise BuildError(f"control file: malformed line {line!r}; check debian/control.j2 and the config values")


def _docs(templates: Templates, spec: PackageSpec, mtime: int) -> dict:
    doc = Layout(spec.name).doc_dir
    year = time.gmtime(mtime).tm_year
    changelog = templates.render(
        "changelog.j2",
        {
            "name": spec.name,
            "version": spec.version,
            "maintainer": spec.maintainer,
            "date": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(mtime)),
        },
    )
    copyright_text = templates.render(
        "copyright.j2",
        {
            "name": spec.name,
            "maintainer": spec.maintainer,
            "license": spec.license,
            "copyright": spec.copyright or f"{year} {spec.maintainer}",
            "license_text": _license_text(spec.license),
        },
    )
    changelog_name = "changelog.gz" if spec.native else "changelog.Debian.gz"
    return {
        f"{doc}/{changelog_name}": gzip_n(changelog.encode()),
        f"{doc}/copyright": copyright_text.encode(),
    }


def gzip_n(data: bytes) -> bytes:
    """What ``gzip -9n`` writes: zlib's own gzip header (wbits 31) has mtime 0, no name and
    OS byte 3 (Unix) on every Python, where the gzip module's OS byte changed in 3.13."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def manifest(spec: PackageSpec, plan: Plan) -> dict:
    """What ``ship`` needs to know about a package, kept inside it: units, health, startup."""
    data = Manifest.of(spec.name, spec.version, plan.startup, spec.health, spec.keep_versions, plan.units)
    return {Layout(spec.name).manifest: data.to_json().encode()}


def lintian_overrides(spec: PackageSpec, plan: Plan) -> dict:
    """The one lintian override file debship writes, for files under /opt (FHS 3.0 3.13, "add-on
    application software packages", where local packages go): dir-or-file-in-opt is a tag for the
    Debian archive, whose own packages may not use /opt; missing-intermediate-directory because
    the package does not own /opt (``layout.HOST_DIRS``)."""
    if not any(e.dest.startswith("/opt/") for e in plan.entries):
        return {}
    text = (
        "# A local package, not one for the Debian archive: /opt is where FHS 3.0 puts add-on\n"
        "# application packages, and the folder the admin chose for it.\n"
        f"{spec.name}: dir-or-file-in-opt [opt/*]\n"
        "# /opt exists on every Debian host and no package owns it: listing it would make dpkg\n"
        "# remove it on purge (when empty), so the package installs into it without owning it.\n"
        f"{spec.name}: missing-intermediate-directory [opt/]\n"
    )
    return {Layout(spec.name).lintian_overrides: text.encode()}


def _license_text(license_name: str) -> list[str]:
    if license_name.lower() == "proprietary":
        return ["All rights reserved."]
    return [
        f"Distributed under the terms of the {license_name} license;",
        "the full text is kept in the project's repository.",
    ]


def template_dirs(project_dir: Path) -> list[Path]:
    """The project's own debian/ first, then the templates shipped with debship."""
    here = Path(__file__).resolve().parent
    builtin = here / "templates" if (here / "templates").is_dir() else here.parent / "debian"
    dirs = [project_dir / "debian", builtin]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in {x.resolve() for x in dirs[:i]}]


# How every template is read; part of the rendered-text cache's key.
ENV_OPTIONS = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True, "autoescape": False}


class Templates:
    """The templates a project builds with (see ``template_dirs``), rendered through a cache.

    jinja2 is the slowest import of ``build-deb`` (about 50 ms, more than the rest of a small
    build), so a rendered text is kept in the cache (``rendered``), found by a hash of every
    template in the search path, the installed jinja2, ``ENV_OPTIONS`` and the repr of the
    context: a rebuild of an unchanged project at the same version neither imports jinja2 nor
    renders.  A context holds only plain values and frozen dataclasses, whose repr is all of
    them.  On a miss the template is rendered with jinja2 (compiled templates are cached too).
    """

    def __init__(self, project_dir: Path) -> None:
        self.dirs = template_dirs(project_dir)
        self._env: jinja2.Environment | None = None
        self._fingerprint: str | None = None

    def render(self, name: str, context: dict) -> str:
        key = cache.key(self.fingerprint(), name, repr(sorted(context.items())))
        hit = cache.read("rendered", key)
        if hit is not None:
            return hit.decode()
        text = self._render(name, context)
        cache.write("rendered", key, text.encode())
        return text

    def fingerprint(self) -> str:
        """A hash of what a rendered text depends on besides its context."""
        if self._fingerprint is None:
            parts: list[bytes | str] = [repr(ENV_OPTIONS), _jinja2_identity()]
            for i, folder in enumerate(self.dirs):
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        parts += [f"{i}:{path.relative_to(folder).as_posix()}", path.read_bytes()]
            self._fingerprint = cache.key(*parts)
        return self._fingerprint

    def _environment(self) -> jinja2.Environment:
        if self._env is None:
            import jinja2

            self._env = jinja2.Environment(
                loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
                undefined=jinja2.StrictUndefined,
                bytecode_cache=cache.templates(),
                **ENV_OPTIONS,
            )
        return self._env

    def _render(self, name: str, context: dict) -> str:
        import jinja2

        try:
            return self._environment().get_template(name).render(**context)
        except jinja2.TemplateNotFound:
            raise BuildError(
                f"template {name} not found in {', '.join(str(d) for d in self.dirs)}; restore it or reinstall debship"
            ) from None
        except jinja2.TemplateError as e:
            where = getattr(e, "filename", None) or name
            line = getattr(e, "lineno", None)
            raise BuildError(f"{where}{f':{line}' if line else ''}: template error: {e.message}") from e


def _jinja2_identity() -> bytes:
    """The installed jinja2's ``__init__.py`` (it holds ``__version__``), found without importing it."""
    spec = importlib.machinery.PathFinder.find_spec("jinja2")
    if spec is None or not spec.origin:
        raise BuildError("jinja2 is not installed; reinstall debship (pip install debship)")
    return spec.origin.encode() + b"\0" + Path(spec.origin).read_bytes()
