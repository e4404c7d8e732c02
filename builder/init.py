"""``debship init``: a working configuration for the project that is already there.

It reads what the folder holds (units/, scripts/, configs/, an existing
pyproject.toml, git's author and remote, the folder's name), decides the
configuration as plain data (``propose``), and only then writes files
(``write``): the ``[tool.debship]`` table appended to pyproject.toml without
touching the rest (or a new debship.toml), a ``scripts/startup.py`` when asked,
and an example CI workflow.  It never overwrites a file: if any file it would
write is there already, it writes nothing and names that file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import MAINTAINER_RE, NAME_RE, UNIT_NAME_RE
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

KINDS = ("units", "scripts", "configs")
CI_FILES = {"github": ".github/workflows/debship.yml", "gitlab": ".gitlab-ci.yml"}
# Commands a script or an Exec line may run, and the Debian package that provides each
# (only those that are not Essential; lintian wants a python3 script to depend on python3).
PROVIDERS = {
    "python3": "python3",
    "docker": "docker.io | docker-ce",
    "curl": "curl",
    "jq": "jq",
    "rsync": "rsync",
    "node": "nodejs",
    "nodejs": "nodejs",
    "ruby": "ruby",
}


@dataclass(frozen=True)
class Proposal:
    """What ``init`` would write: each file's project-relative path and text, plus notes for the user."""

    name: str
    config_path: str  # "pyproject.toml" (appended to) or "debship.toml" (new)
    config_text: str  # the text written (or appended)
    files: tuple[tuple[str, str, int], ...]  # (relative path, text, mode) of new files
    notes: tuple[str, ...]


def propose(
    project_dir: Path,
    *,
    name: str | None = None,
    maintainer: str | None = None,
    startup: bool = False,
    ci: str | None = "github",
) -> Proposal:
    """Decide the configuration for the project in ``project_dir``; nothing is written."""
    project_dir = project_dir.resolve()
    if not project_dir.is_dir():
        raise ConfigError(f"{project_dir}: no such folder; create it or pass an existing DIR")
    pyproject = _read_pyproject(project_dir / "pyproject.toml")
    if pyproject is not None and "debship" in pyproject.get("tool", {}):
        raise ConfigError(
            f"{project_dir / 'pyproject.toml'}: already has [tool.debship]; nothing to do "
            "(edit it, or remove the table to start again)"
        )
    if (project_dir / "debship.toml").exists():
        raise ConfigError(f"{project_dir / 'debship.toml'}: already there; init never overwrites a file")
    project = pyproject.get("project", {}) if pyproject else {}
    name = name or _name_from(project.get("name") or project_dir.name)
    if not NAME_RE.match(name):
        raise ConfigError(
            f"'{name}': not a Debian package name; pass --name with lower-case letters, digits, '+', '-' and '.'"
        )
    maintainer = maintainer or _maintainer(project_dir, project)
    if not MAINTAINER_RE.match(maintainer):
        raise ConfigError(f"--maintainer '{maintainer}' must look like 'Full Name <user@example.com>'")
    present = [k for k in KINDS if _has_files(project_dir / k)]
    has_startup = (project_dir / "scripts" / "startup.py").exists()
    if not present and not startup:
        raise ConfigError(
            f"{project_dir}: nothing to package; add files to units/, scripts/ or configs/, "
            "or pass --startup to start with a scripts/startup.py"
        )
    files: list[tuple[str, str, int]] = []
    if startup:
        if has_startup:
            raise ConfigError(
                f"{project_dir / 'scripts' / 'startup.py'}: already there; init never overwrites "
                "a file (drop --startup: the existing one is used)"
            )
        files.append(("scripts/startup.py", STARTUP_PY.replace("@NAME@", name), 0o755))
    if ci is not None:
        files.append((CI_FILES[ci], ci_workflow(ci, name), 0o644))
    table, notes = _table(project_dir, project, name, maintainer, present, startup or has_startup)
    for rel, _, _ in files:
        if (project_dir / rel).exists():
            raise ConfigError(
                f"{project_dir / rel}: already there; init never overwrites a file "
                + ("(pass --ci none)" if rel in CI_FILES.values() else "(move it away first)")
            )
    if pyproject is not None:
        proposal = Proposal(name, "pyproject.toml", "\n" + _as_toml(table, "tool.debship"), tuple(files), tuple(notes))
        tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8") + proposal.config_text)
        return proposal
    return Proposal(name, "debship.toml", _as_toml(table, None), tuple(files), tuple(notes))


def write(project_dir: Path, proposal: Proposal) -> list[Path]:
    """Write the proposal: new files created exclusively (never over an existing one), the config last."""
    project_dir = project_dir.resolve()
    written: list[Path] = []
    try:
        for rel, text, mode in proposal.files:
            path = project_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            written.append(path)
            os.chmod(path, mode)
        config = project_dir / proposal.config_path
        if proposal.config_path == "pyproject.toml":
            with open(config, "a", encoding="utf-8") as f:
                f.write(proposal.config_text)
        else:
            with open(config, "x", encoding="utf-8") as f:
                f.write(proposal.config_text)
            written.append(config)
    except FileExistsError as e:
        for path in written:
            path.unlink(missing_ok=True)
        raise ConfigError(f"{e.filename}: already there; init never overwrites a file") from e
    except OSError as e:
        for path in written:
            path.unlink(missing_ok=True)
        raise ConfigError(f"{e.filename or project_dir}: cannot write ({e.strerror})") from e
    return [project_dir / proposal.config_path, *(project_dir / rel for rel, _, _ in proposal.files)]


def _read_pyproject(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix it before running init") from e


def _name_from(text: str) -> str:
    """A Debian package name from a folder or project name: 'My_Service' -> 'my-service'."""
    name = re.sub(r"[^a-z0-9+.-]+", "-", text.lower()).strip("-.+")
    return name


def _git(project_dir: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=project_dir, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _maintainer(project_dir: Path, project: dict) -> str:
    """[project].authors, else DEBFULLNAME/DEBEMAIL (as dch reads them), else git's user."""
    for author in project.get("authors") or ():
        if isinstance(author, dict) and author.get("name") and author.get("email"):
            return f"{author['name']} <{author['email']}>"
    name = os.environ.get("DEBFULLNAME") or _git(project_dir, "config", "user.name")
    email = os.environ.get("DEBEMAIL") or _git(project_dir, "config", "user.email")
    if not (name and email):
        raise ConfigError(
            "no maintainer found ([project].authors, DEBFULLNAME/DEBEMAIL or git config user.name "
            "and user.email); pass --maintainer 'Full Name <user@example.com>'"
        )
    return f"{name} <{email}>"


def _homepage(project_dir: Path, project: dict) -> str | None:
    urls = project.get("urls") if isinstance(project.get("urls"), dict) else {}
    for key in ("Homepage", "homepage", "Repository", "repository"):
        if isinstance(urls.get(key), str) and urls[key].startswith(("http://", "https://")):
            return urls[key]
    remote = _git(project_dir, "remote", "get-url", "origin")
    match = re.match(r"^(?:git@|ssh://git@)([^:/]+)[:/](.+?)(?:\.git)?$", remote)
    if match:
        return f"https://{match.group(1)}/{match.group(2)}"
    if remote.startswith("https://"):
        return remote[:-4] if remote.endswith(".git") else remote
    return None


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*") if ".git" not in p.parts)


def _commands(project_dir: Path) -> set[str]:
    """Interpreters named by the scripts' #! lines and programs the units' Exec lines run."""
    found: set[str] = set()
    for path in sorted((project_dir / "scripts").rglob("*")) if (project_dir / "scripts").is_dir() else ():
        if path.is_file():
            with path.open("rb") as f:
                first = f.readline(200).decode("utf-8", "replace")
            if first.startswith("#!"):
                words = first[2:].split()
                if words and words[0].endswith("/env") and len(words) > 1:
                    words = words[1:]
                if words:
                    found.add(os.path.basename(words[0]))
    for path in sorted((project_dir / "units").glob("*")) if (project_dir / "units").is_dir() else ():
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().startswith("Exec") and value.strip():
                    found.add(os.path.basename(value.strip().lstrip("-@:+!").split()[0]))
    return found


def _executables_without_interpreter(project_dir: Path) -> list[str]:
    """Executable scripts with no #! line: lintian warns (executable-not-elf-or-script)."""
    found = []
    scripts = project_dir / "scripts"
    for path in sorted(scripts.rglob("*")) if scripts.is_dir() else ():
        if path.is_file() and path.stat().st_mode & 0o111:
            with path.open("rb") as f:
                if f.read(2) != b"#!":
                    found.append(path.relative_to(project_dir).as_posix())
    return found


def _depends(project_dir: Path, startup: bool) -> list[str]:
    commands = _commands(project_dir) | ({"python3"} if startup else set())
    if any(re.fullmatch(r"python3(\.\d+)?", c) for c in commands):
        commands.add("python3")
    return sorted({PROVIDERS[c] for c in commands if c in PROVIDERS})


def _timer_services(units: Path) -> list[str]:
    """Services a timer of the bundle starts: they run on the timer, not at install."""
    started = []
    for timer in sorted(units.glob("*.timer")) if units.is_dir() else ():
        target = timer.name[: -len(".timer")] + ".service"
        for line in timer.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "Unit" and value.strip():
                target = value.strip()
        if (units / target).is_file() and UNIT_NAME_RE.match(target) and "@" not in target:
            started.append(target)
    return started


def _table(
    project_dir: Path, project: dict, name: str, maintainer: str, present: list[str], startup: bool
) -> tuple[dict, list[str]]:
    table: dict = {"name": name}
    notes: list[str] = []
    if not project.get("version"):
        table["version"] = "0.1.0"
        notes.append('version = "0.1.0": raise it for each release (or pass build-deb --version)')
    table["maintainer"] = maintainer
    description = project.get("description")
    if not (isinstance(description, str) and 0 < len(description) <= 80 and "\n" not in description):
        description = f"services and scripts of {name}, deployed with debship"[:80]
    table["description"] = description.rstrip(".")
    homepage = _homepage(project_dir, project)
    if homepage:
        table["homepage"] = homepage
    depends = _depends(project_dir, startup)
    if depends:
        table["depends"] = depends
    absent = [k for k in KINDS if k not in present]
    if absent:
        notes.append(
            f"no {', '.join(k + '/' for k in absent)} here: the package has none of "
            f"{'that kind' if len(absent) == 1 else 'those kinds'}"
        )
    for rel in _executables_without_interpreter(project_dir):
        notes.append(f"{rel} is executable but has no #! line; lintian warns: chmod -x it or add one")
    units = {}
    for service in _timer_services(project_dir / "units"):
        units[service] = {"start": False}
        notes.append(f"{service}: started by its timer, not at install (start = false)")
    if units:
        table["units"] = units
    return table, notes


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_toml(table: dict, prefix: str | None) -> str:
    lines = ["# debship: `build-deb` builds the .deb, `debship ship` installs it (written by `debship init`)."]
    if prefix:
        lines.append(f"[{prefix}]")
    for key, value in table.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_value(value)}")
    lines.append('# health = "curl -fsS http://127.0.0.1:8080/healthz"   # run on the host after each ship')
    for unit, opts in table.get("units", {}).items():
        head = f"{prefix}.units" if prefix else "units"
        lines += ["", f'[{head}."{unit}"]', *(f"{k} = {_value(v)}" for k, v in opts.items())]
    return "\n".join(lines) + "\n"


STARTUP_PY = '''#!/usr/bin/python3
"""@NAME@ startup: run by the package's postinst on every install, upgrade and downgrade.

Keep it idempotent (a second run changes nothing) and quick; exit non-zero with a
message on stderr to fail the install, which `debship ship` then rolls back.
"""
import os
import sys

STATE_DIR = "/var/lib/@NAME@"


def main():
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    print(f"@NAME@: state in {STATE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


# The CI job's shell steps, one script for GitHub Actions and GitLab CI (docs/ci.md shows both;
# tests/integration/test_ci.py runs it in a clean Debian root).  DEBSHIP_INSTALL is what pip
# installs: a release from an index, a git URL or a wheel; RELEASE is the tag (v1.2.0 builds 1.2.0).  The repository lives in repo/, kept
# between runs by the CI's cache; the last release in it is what the new one is compared with.
CI_SCRIPT = """set -eu
[ -x .debship-venv/bin/pip ] || python3 -m venv .debship-venv
.debship-venv/bin/pip install --quiet "${DEBSHIP_INSTALL:-debship}"
export PATH="$PWD/.debship-venv/bin:$PATH"
version=${RELEASE#v}
build-deb --json ${version:+--version "$version"} > build.json
new=$(python3 -c 'import json; print(json.load(open("build.json"))["path"])')
mkdir -p repo
previous=$(find repo/pool -name "${PACKAGE}_*.deb" 2>/dev/null | sort -V | tail -n 1)
if [ -n "$previous" ]; then debship diff "$previous" "$new"; else echo "first release: nothing to diff"; fi
printf '%s\\n' "$DEBSHIP_SIGNING_KEY" | gpg --batch --import
debship publish "$new" --repo repo --sign-key "$DEBSHIP_SIGNING_KEY_ID"
"""


def ci_workflow(kind: str, name: str) -> str:
    """The example workflow: GitHub Actions or GitLab CI, both running ``CI_SCRIPT``."""
    script = CI_SCRIPT.rstrip("\n").splitlines()
    if kind == "github":
        body = "\n".join("          " + line for line in script)
        return f"""# Builds {name}, shows what changed since the last release and publishes it to
# the apt repository kept in the repo/ folder (written by `debship init`; see docs/ci.md).
name: debship
on:
  push:
    tags: ["v*"]
jobs:
  package:
    runs-on: ubuntu-latest
    env:
      PACKAGE: {name}
      RELEASE: ${{{{ github.ref_name }}}}
      DEBSHIP_INSTALL: debship
      DEBSHIP_SIGNING_KEY: ${{{{ secrets.DEBSHIP_SIGNING_KEY }}}}
      DEBSHIP_SIGNING_KEY_ID: ${{{{ secrets.DEBSHIP_SIGNING_KEY_ID }}}}
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: actions/cache@v4
        with:
          path: repo
          key: debship-repo-${{{{ github.run_id }}}}
          restore-keys: debship-repo-
      - name: build, diff against the last release, publish
        run: |
{body}
      - uses: actions/upload-artifact@v4
        with:
          name: apt-repository
          path: repo
"""
    body = "\n".join("      " + line for line in script)
    return f"""# Builds {name}, shows what changed since the last release and publishes it to
# the apt repository kept in the repo/ folder (written by `debship init`; see docs/ci.md).
debship:
  image: debian:12
  rules:
    - if: $CI_COMMIT_TAG
  variables:
    PACKAGE: {name}
    RELEASE: $CI_COMMIT_TAG
    DEBSHIP_INSTALL: debship
  cache:
    key: debship-repo
    paths: [repo]
  before_script:
    - apt-get update && apt-get install -y --no-install-recommends python3-venv gnupg git
  script:
    - |
{body}
  artifacts:
    paths: [repo]
"""
