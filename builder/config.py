"""Reading ``[tool.debship]`` (or ``debship.toml``) into a frozen ``PackageSpec``.

Defaults live in ``DEFAULTS`` and nowhere else; ``validate`` is separate from
reading; every error names the key and the fix.  Unknown keys are errors (a
typo must not silently change what gets installed), with a suggestion.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import version as versions
from .errors import ConfigError
from .layout import ADMIN_DIRS, UNIT_DIR
from .manifest import KEEP_VERSIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

ON_UPGRADE = ("restart", "stop", "none")

DEFAULTS: dict[str, Any] = {
    "version": None,
    "description": None,
    "long-description": None,
    "architecture": "all",
    "section": "admin",
    "priority": "optional",
    "homepage": None,
    "license": "proprietary",
    "copyright": None,  # default: "<year> <maintainer>"
    "depends": [],
    "startup": "startup.py",  # relative to the scripts folder; false turns it off
    "health": None,  # a shell command run on the host after install
    "keep-versions": KEEP_VERSIONS,
    "folders": {"units": "units", "scripts": "scripts", "configs": "configs"},
    "install": {"units": UNIT_DIR, "scripts": "/usr/lib/{name}", "configs": "/etc/{name}"},
    "units": {},
    "allow-secrets": [],  # bundle files (like "configs/tls/server.key") shipped 0600 despite looking secret
    "host-accounts": [],  # users and groups the hosts have from elsewhere (a dependency, the image)
}
REQUIRED = ("name", "maintainer", "description")
UNIT_DEFAULTS: dict[str, Any] = {"enable": None, "start": True, "on-upgrade": "restart"}

# Debian Policy 2.5 (``extra`` is deprecated: lintian asks for ``optional``) and the archive's
# sections of Policy 2.4, optionally behind an area (``contrib/net``).
PRIORITIES = ("required", "important", "standard", "optional")
SECTIONS = frozenset(
    """admin cli-mono comm database debian-installer debug devel doc editors education
    electronics embedded fonts games gnome gnu-r gnustep graphics hamradio haskell httpd interpreters
    introspection java javascript kde kernel libdevel libs lisp localization mail math metapackages misc net
    news ocaml oldlibs otherosfs perl php python ruby rust science shells sound tasks tex text utils vcs video
    web x11 xfce zope""".split()
)
AREAS = ("", "main", "contrib", "non-free", "non-free-firmware")
# Essential: yes in Debian 12 (dpkg-query -W -f '${Package} ${Essential}'): always installed, so lintian
# (depends-on-essential-package-without-using-version) wants a version on a dependency on one of them.
ESSENTIAL = frozenset(
    """base-files base-passwd bash bsdutils coreutils dash debianutils diffutils dpkg findutils
    grep gzip hostname init-system-helpers libc-bin login ncurses-base ncurses-bin perl-base sed sysvinit-utils
    tar util-linux""".split()
)
# Where systemd looks for the units of packages (dh_installsystemd installs to one of them).
UNIT_FOLDERS = ("/lib/systemd/system", "/usr/lib/systemd/system")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # a Debian package name
REPO_URL_RE = re.compile(r"^(https?|file)://\S+$")  # an apt repository hosts can reach
MAINTAINER_RE = re.compile(r"^[^<>,\n]+ <[^<>@\s]+@[^<>\s]+>$")
ACCOUNT_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DEP_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?( \((<<|<=|=|>=|>>) [^()\s]+\))?$")
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9:_.\\-]+@?[A-Za-z0-9:_.\\-]*\.(service|socket|timer|path|mount|target)$")


@dataclass(frozen=True)
class UnitOptions:
    """Per-unit choices; ``enable=None`` means "if the unit has an [Install] section"."""

    enable: bool | None
    start: bool
    on_upgrade: str


@dataclass(frozen=True)
class PackageSpec:
    name: str
    version: str
    maintainer: str
    description: str
    long_description: str
    project_dir: Path
    architecture: str
    section: str
    priority: str
    homepage: str | None
    license: str
    copyright: str | None
    depends: tuple[str, ...]
    startup: str | None
    health: str | None
    keep_versions: int
    folders: Mapping[str, Path | None] = field(default_factory=dict)  # kind -> absolute source folder
    install: Mapping[str, str] = field(default_factory=dict)  # kind -> absolute host folder
    units: Mapping[str, UnitOptions] = field(default_factory=dict)
    allow_secrets: tuple[str, ...] = ()  # project-relative paths
    host_accounts: frozenset[str] = frozenset()  # units may run as these
    source: Path | None = None  # the file the config came from
    warnings: tuple[str, ...] = ()  # values made right, said once
    # Bundle folders and startup the config names itself. A default folder (units, scripts,
    # configs) that does not exist is "none of this kind"; a named one must exist.
    named: frozenset[str] = frozenset()  # "folders.<kind>", "startup"

    @property
    def native(self) -> bool:
        """A version without a Debian revision is a native package (changelog.gz, not changelog.Debian.gz)."""
        return "-" not in self.version

    def unit_options(self, unit: str) -> UnitOptions:
        return self.units.get(unit) or DEFAULT_UNIT_OPTIONS


def find_config(project_dir: Path) -> tuple[Path, dict]:
    """The raw ``[tool.debship]`` table and the file it came from."""
    pyproject, standalone = project_dir / "pyproject.toml", project_dir / "debship.toml"
    for path in (standalone, pyproject):
        if not path.is_file():
            continue
        data = _read_toml(path)
        if path == standalone:
            return path, data
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError(f"{path}: 'tool' must be a table; write [tool.debship]")
        if "debship" in tool:
            if not isinstance(tool["debship"], dict):
                raise ConfigError(f"{path}: 'tool.debship' must be a table; write [tool.debship] and keys under it")
            return path, data
    raise ConfigError(
        f"{project_dir}: no debship configuration; add a [tool.debship] table to pyproject.toml "
        "or create debship.toml (name, maintainer and description are required)"
    )


def load(project_dir: Path, version_override: str | None = None) -> PackageSpec:
    """Read, default and validate the configuration of the project in ``project_dir``."""
    project_dir = project_dir.resolve()
    if not project_dir.is_dir():
        raise ConfigError(f"{project_dir}: project folder does not exist; pass --project DIR")
    path, data = find_config(project_dir)
    table = data if path.name == "debship.toml" else data["tool"]["debship"]
    where = f"{path.name} [tool.debship]" if path.name == "pyproject.toml" else path.name
    raw = _with_defaults(table, where)
    raw["version"] = _resolve_version(raw, data, project_dir, version_override, where)
    return _to_spec(raw, project_dir, path, where, _named(table))


def _named(table: Mapping) -> frozenset[str]:
    """The folders and the startup script the user's table sets, as opposed to the defaults."""
    folders = table.get("folders")
    named = {f"folders.{k}" for k in folders} if isinstance(folders, dict) else set()
    return frozenset(named | ({"startup"} if "startup" in table else set()))


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from e


def _check_keys(table: Mapping, allowed: Mapping | tuple, where: str) -> None:
    for key in table:
        if key not in allowed:
            import difflib  # only for this message

            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "allowed: " + ", ".join(sorted(allowed))
            raise ConfigError(f"{where}: unknown key '{key}'; {hint}")


def _with_defaults(table: Mapping, where: str) -> dict:
    """Merge the user's table over ``DEFAULTS``; unknown and missing keys are errors."""
    _check_keys(table, (*REQUIRED, *DEFAULTS), where)
    for key in REQUIRED:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string; write {key} = \"...\"")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: required key '{key}' is missing or empty; add {key} = \"...\"")
    raw = {**DEFAULTS, **table}
    for sub in ("folders", "install"):
        if not isinstance(raw[sub], dict):
            raise ConfigError(f"{where}: '{sub}' must be a table like [tool.debship.{sub}]")
        _check_keys(raw[sub], DEFAULTS[sub], f"{where} {sub}")
        raw[sub] = {**DEFAULTS[sub], **raw[sub]}
    if not isinstance(raw["units"], dict):
        raise ConfigError(f"{where}: 'units' must be a table of unit names, like [tool.debship.units.\"x.service\"]")
    return raw


def _resolve_version(raw: dict, data: dict, project_dir: Path, override: str | None, where: str) -> str:
    """--version, else [tool.debship].version, else [project].version, else git describe."""
    candidates = (
        (override, "--version"),
        (raw.get("version"), f"{where} version"),
        (
            data.get("project", {}).get("version") if isinstance(data.get("project"), dict) else None,
            "[project].version",
        ),
    )
    for value, origin in candidates:
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f'{origin}: version must be a non-empty string like "1.2.3"')
        return versions.to_debian(value.strip())
    from_git = versions.git_version(project_dir)
    if from_git is None:
        raise ConfigError(
            f'{where}: no version; set version = "1.2.3", set [project].version, or tag the git repository'
        )
    return from_git


def _to_spec(
    raw: dict, project_dir: Path, source: Path, where: str, named: frozenset[str] = frozenset()
) -> PackageSpec:
    name = raw["name"].strip()
    validate_name(name, where)
    spec = PackageSpec(
        name=name,
        version=raw["version"],
        maintainer=_str(raw, "maintainer", where),
        description=_str(raw, "description", where),
        long_description=_str(raw, "long-description", where, required=False)
        or "Scripts, configuration files and systemd units deployed as one package built by debship.",
        project_dir=project_dir,
        architecture=_str(raw, "architecture", where),
        section=_str(raw, "section", where),
        priority=_str(raw, "priority", where),
        homepage=_str(raw, "homepage", where, required=False),
        license=_str(raw, "license", where),
        copyright=_str(raw, "copyright", where, required=False),
        depends=_depends(raw["depends"], where),
        startup=_startup(raw["startup"], where),
        health=_str(raw, "health", where, required=False),
        keep_versions=_positive_int(raw["keep-versions"], "keep-versions", where),
        folders={k: _folder(project_dir, v, k, where) for k, v in raw["folders"].items()},
        install={k: _install_path(v, k, where).replace("{name}", name) for k, v in raw["install"].items()},
        units={u: _unit_options(u, o, where) for u, o in raw["units"].items()},
        allow_secrets=_allow_secrets(raw["allow-secrets"], where),
        host_accounts=_host_accounts(raw["host-accounts"], where),
        source=source,
        named=named,
    )
    validate(spec, where)
    return spec


def validate_name(name: str, where: str = "name") -> None:
    if not NAME_RE.match(name):
        raise ConfigError(
            f"{where}: package name '{name}' is invalid; use at least two characters of "
            "lower-case letters, digits, '+', '-' and '.', starting with a letter or digit"
        )


def validate(spec: PackageSpec, where: str) -> None:
    """Checks that need more than one field, or Debian's rules for a field."""
    versions.validate(spec.version)
    if not MAINTAINER_RE.match(spec.maintainer):
        raise ConfigError(f"{where}: maintainer '{spec.maintainer}' must look like 'Full Name <user@example.com>'")
    if "\n" in spec.description or len(spec.description) > 80:
        raise ConfigError(
            f"{where}: description must be one line of at most 80 characters; put the rest in long-description"
        )
    if spec.priority not in PRIORITIES:
        raise ConfigError(
            f"{where}: priority '{spec.priority}' is not a Debian priority; "
            f"use optional (or {', '.join(PRIORITIES[:-1])})"
        )
    area, _, section = spec.section.rpartition("/")
    if area not in AREAS or section not in SECTIONS:
        raise ConfigError(
            f"{where}: section '{spec.section}' is not a Debian archive section; "
            "use admin, utils, net, misc … (Debian Policy 2.4), optionally as contrib/<section>"
        )
    if not ARCH_RE.match(spec.architecture):
        raise ConfigError(f"{where}: architecture '{spec.architecture}' is invalid; use 'all' or e.g. 'amd64'")
    if spec.architecture in ("any", "source") or "any" in spec.architecture.split("-"):
        raise ConfigError(
            f"{where}: architecture '{spec.architecture}' is a wildcard, which only a source "
            "package may have (dpkg refuses to install it); use 'all' or one like 'amd64'"
        )
    _check_description(spec, where)
    _check_depends(spec, where)
    _check_install(spec, where)
    if spec.homepage is not None and not re.match(r"^https?://[^\s/]+", spec.homepage):
        raise ConfigError(
            f"{where}: homepage '{spec.homepage}' is not a web address; write it with its scheme, "
            'like "https://example.com/project"'
        )
    if spec.startup is not None and spec.folders.get("scripts") is None and "startup" in spec.named:
        raise ConfigError(f"{where}: startup = '{spec.startup}' needs a scripts folder; set startup = false")


def _check_description(spec: PackageSpec, where: str) -> None:
    """lintian: description-starts-with-package-name, description-synopsis-is-duplicated."""
    first = spec.description.split()[0].lower() if spec.description.split() else ""
    if first.rstrip(":,") == spec.name.lower():
        raise ConfigError(
            f"{where}: description starts with the package name '{spec.name}'; say what it "
            'does instead, like description = "deploys the fleet agent and its timers"'
        )
    if " ".join(spec.long_description.split()).lower() == " ".join(spec.description.split()).lower():
        raise ConfigError(f"{where}: long-description repeats description; say more in it, or remove it")


def _check_depends(spec: PackageSpec, where: str) -> None:
    """lintian: depends-on-essential-package-without-using-version (alternatives are left alone)."""
    for dep in spec.depends:
        if "|" not in dep and "(" not in dep and dep.split(":")[0] in ESSENTIAL:
            raise ConfigError(
                f"{where}: depends entry '{dep}' is an essential package, on every Debian host; "
                f"remove it, or give the version you need like '{dep} (>= 1.0)'"
            )


def _check_install(spec: PackageSpec, where: str) -> None:
    """Where each kind may go so that dpkg and lintian treat it right."""
    configs, scripts, units = (spec.install.get(k, "") for k in ("configs", "scripts", "units"))
    if spec.folders.get("configs") is not None and not (configs + "/").startswith("/etc/"):
        raise ConfigError(
            f'{where}: install.configs = "{configs}": configs are conffiles, which Debian keeps '
            'under /etc (lintian: non-etc-file-marked-as-conffile); use "/etc/{name}", or move '
            "files that are not configuration to the scripts folder"
        )
    if spec.folders.get("scripts") is not None and (scripts + "/").startswith("/etc/"):
        raise ConfigError(
            f'{where}: install.scripts = "{scripts}" is under /etc, where every file must be a '
            'conffile (lintian: file-in-etc-not-marked-as-conffile); use "/usr/lib/{name}", or '
            "move the files the admin edits to the configs folder"
        )
    if spec.folders.get("units") is not None and units not in UNIT_FOLDERS:
        raise ConfigError(
            f'{where}: install.units = "{units}" is not where systemd loads packaged units; '
            f'use "{UNIT_FOLDERS[1]}" (or "{UNIT_FOLDERS[0]}")'
        )


def _str(raw: dict, key: str, where: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or ("\n" in value and key != "long-description"):
        raise ConfigError(f"{where}: '{key}' must be a one-line string")
    return value.strip()


def _depends(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise ConfigError(f'{where}: \'depends\' must be a list of strings like ["python3", "curl (>= 7.0)"]')
    for dep in value:
        for alt in dep.split("|"):
            if not DEP_RE.match(alt.strip()):
                raise ConfigError(f"{where}: depends entry '{dep}' is invalid; write it like 'curl (>= 7.88)'")
    return tuple(d.strip() for d in value)


def _startup(value: Any, where: str) -> str | None:
    if value is False:
        return None
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in Path(value).parts:
        raise ConfigError(f"{where}: 'startup' must be a path inside the scripts folder (like \"startup.py\") or false")
    return value


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: '{key}' must be a whole number of at least 1")
    return value


def _folder(project_dir: Path, value: Any, kind: str, where: str) -> Path | None:
    """A bundle folder inside the project; ``false`` means "package none of this kind"."""
    if value is False:
        return None
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise ConfigError(f'{where}: folders.{kind} must be a folder inside the project (like "{kind}") or false')
    return project_dir / value


def _install_path(value: Any, kind: str, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or ".." in value.split("/") or value.rstrip("/") == "":
        raise ConfigError(f'{where}: install.{kind} must be an absolute folder on the host like "/usr/lib/{{name}}"')
    if "{" in value.replace("{name}", "") or "}" in value.replace("{name}", ""):
        raise ConfigError(f'{where}: install.{kind} = "{value}": the only placeholder is {{name}}; fix the braces')
    for reserved, instead in ADMIN_DIRS.items():
        if value == reserved or value.startswith(reserved + "/"):
            raise ConfigError(
                f'{where}: install.{kind} = "{value}": {reserved} belongs to the local admin, '
                f"no package may install there (Debian Policy 9.1.2); use {instead}"
            )
    return value.rstrip("/")


def _allow_secrets(value: Any, where: str) -> tuple[str, ...]:
    """Project-relative bundle files that may look like secrets (they are installed 0600)."""
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(f"{where}: 'allow-secrets' must be a list of bundle files like [\"configs/tls/server.key\"]")
    for p in value:
        if Path(p).is_absolute() or ".." in Path(p).parts:
            raise ConfigError(
                f"{where}: allow-secrets entry '{p}' must be a path relative to the project, "
                'like "configs/tls/server.key"'
            )
    return tuple(Path(p).as_posix() for p in value)


def _host_accounts(value: Any, where: str) -> frozenset[str]:
    """User and group names the package does not create but every host has (useradd's rules)."""
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ConfigError(f"{where}: 'host-accounts' must be a list of user or group names like [\"postgres\"]")
    for n in value:
        if not ACCOUNT_RE.match(n):
            raise ConfigError(
                f"{where}: host-accounts entry '{n}' is not a user or group name; use lower-case "
                "letters, digits, '_' and '-', starting with a letter or '_', at most 32"
            )
    return frozenset(value)


def _unit_options(unit: str, opts: Any, where: str) -> UnitOptions:
    here = f'{where} units."{unit}"'
    if not UNIT_NAME_RE.match(unit):
        raise ConfigError(f"{here}: not a unit file name like 'agent.service' or 'job@.timer'")
    if not isinstance(opts, dict):
        raise ConfigError(f"{here}: must be a table with enable, start and on-upgrade")
    _check_keys(opts, UNIT_DEFAULTS, here)
    merged = {**UNIT_DEFAULTS, **opts}
    for key in ("enable", "start"):
        if merged[key] is not None and not isinstance(merged[key], bool):
            raise ConfigError(f"{here}: '{key}' must be true or false")
    if merged["on-upgrade"] not in ON_UPGRADE:
        raise ConfigError(f"{here}: on-upgrade must be one of {', '.join(ON_UPGRADE)}")
    return UnitOptions(enable=merged["enable"], start=merged["start"], on_upgrade=merged["on-upgrade"])


DEFAULT_UNIT_OPTIONS = UnitOptions(
    enable=UNIT_DEFAULTS["enable"], start=UNIT_DEFAULTS["start"], on_upgrade=UNIT_DEFAULTS["on-upgrade"]
)
