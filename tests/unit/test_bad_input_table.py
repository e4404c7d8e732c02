"""Every foreseen bad input, as a table, through the real ``build-deb`` command.

Each case breaks the minimal project of ``conftest.project`` in one way and
expects: exit code per the table in docs/build-deb.md (2 configuration, 3 bundle, 4 write),
exactly one line on stderr starting ``build-deb: error: `` that holds the
expected words (the file or key, and the fix), no traceback, and an output
folder that is absent or empty.  Inputs a table row cannot make (a tool to
require, an environment variable, another user) are functions below the table.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from builder.cli import build_deb
from tests.harness.badinput import BUNDLE, CONFIG, WRITE, builds, refused
from tests.harness.helpers import cli_runner, require_root, require_tool

# Ways to break a project (each returns the function the table calls).


def replace(old: str, new: str, rel: str = "debship.toml") -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    return apply


def append(text: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        with open(project / "debship.toml", "a") as f:
            f.write(text)

    return apply


def write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return apply


def as_pyproject(tool_table: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        (project / "debship.toml").unlink()
        (project / "pyproject.toml").write_text(tool_table)

    return apply


def symlink(rel: str, target: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        os.symlink(target, project / rel)

    return apply


def fifo(rel: str) -> Callable[[Path], None]:
    return lambda project: os.mkfifo(project / rel)


def unix_socket(rel: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(project / rel))

    return apply


def sparse(rel: str, size: int) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        with open(project / rel, "wb") as f:
            f.truncate(size)

    return apply


def remove(rel: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def drop_key(key: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / "debship.toml"
        path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith(key)))

    return apply


def outside(rel: str, folder: bool = False) -> Callable[[Path], None]:
    """``rel`` in the bundle is a symlink to a file (or a folder) outside the project."""

    def apply(project: Path) -> None:
        target = project.parent / ("elsewhere" if folder else "secret.conf")
        target.mkdir() if folder else target.write_text("password=hunter2\n")
        os.symlink(target, project / rel)

    return apply


def undecodable_name(project: Path) -> None:
    with open(os.path.join(os.fsencode(project / "configs"), b"bad\xff.conf"), "wb") as f:
        f.write(b"x\n")


def unit_line(line: str) -> Callable[[Path], None]:
    return replace("Restart=on-failure", f"Restart=on-failure\n{line}", "units/demo-svc.service")


@dataclass(frozen=True)
class Case:
    id: str
    breaks: Callable[[Path], None]
    expect: tuple[str, ...]
    code: int


UNIT = "units/demo-svc.service"
CASES = [
    # --- a missing or broken configuration (2) ---
    Case("no-config-at-all", remove("debship.toml"), ("no debship configuration", "[tool.debship]"), CONFIG),
    Case("toml-malformed", replace('name = "demo-svc"', "name = demo-svc"), ("debship.toml", "not valid TOML"), CONFIG),
    *(
        Case(f"required-key-{key}", drop_key(key), (f"required key '{key}'",), CONFIG)
        for key in ("name", "maintainer", "description")
    ),
    Case(
        "unknown-key-with-a-suggestion",
        append('dependss = ["curl"]\n'),
        ("unknown key 'dependss'", "did you mean 'depends'"),
        CONFIG,
    ),
    *(
        Case(
            f"package-name-{name!r}",
            replace('name = "demo-svc"', f'name = "{name}"'),
            (f"package name '{name}' is invalid",),
            CONFIG,
        )
        for name in ("Demo", "d", "demo_svc", "-demo", "demo svc")
    ),
    *(
        Case(f"version-{version!r}", replace('version = "1.0.0"', f'version = "{version}"'), (version,), CONFIG)
        for version in ("x1.0", "1.0 beta", "1..0:", "1.0-", "a:1.0")
    ),
    Case(
        "maintainer-bare-email",
        replace("Demo Team <demo@example.com>", "demo@example.com"),
        ("maintainer", "Full Name <user@example.com>"),
        CONFIG,
    ),
    Case(
        "depends-with-a-bare-operator",
        replace('depends = ["python3"]', 'depends = ["python3 >= 3.9"]'),
        ("depends entry 'python3 >= 3.9'",),
        CONFIG,
    ),
    Case(
        "folder-escaping-the-project",
        append('[folders]\nconfigs = "../configs"\n'),
        ("folders.configs", "inside the project"),
        CONFIG,
    ),
    Case("install-path-with-dotdot", append('[install]\nconfigs = "/etc/../usr/demo"\n'), ("install.configs",), CONFIG),
    # --- the bundle: folders, scripts, units (3) ---
    Case(
        "named-bundle-folder-missing",
        lambda p: (remove("units")(p), append('[folders]\nunits = "units"\n')(p)),
        ("units folder is missing", "folders].units"),
        BUNDLE,
    ),
    Case(
        "no-bundle-folder-at-all",
        lambda p: [remove(k)(p) for k in ("units", "scripts", "configs")],
        ("nothing to package", "units/, scripts/ or configs/"),
        BUNDLE,
    ),
    Case("empty-bundle-folder", remove("configs/demo.conf"), ("configs folder is empty",), BUNDLE),
    Case(
        "unit-without-execstart",
        replace("ExecStart=", "X-Disabled-ExecStart=", UNIT),
        ("demo-svc.service", "no ExecStart="),
        BUNDLE,
    ),
    Case(
        "execstart-names-a-script-not-in-the-bundle",
        replace("serve.py", "server.py", UNIT),
        ("ExecStart= runs /usr/lib/demo-svc/server.py", "not in the bundle"),
        BUNDLE,
    ),
    Case("symlink-pointing-outside-the-bundle", outside("configs/leak.conf"), ("leak.conf", "points outside"), BUNDLE),
    Case("symlinked-folder", outside("configs/sub", folder=True), ("configs/sub",), BUNDLE),
    Case("file-name-not-utf8", undecodable_name, ("not valid UTF-8",), BUNDLE),
    Case(
        "file-name-with-a-newline",
        write("configs/two\nlines.conf", "x\n"),
        ("whitespace or control characters",),
        BUNDLE,
    ),
    Case(
        "startup-script-missing",
        replace("startup = false", 'startup = "boot.py"'),
        ("startup = 'boot.py'", "no such file"),
        BUNDLE,
    ),
    Case(
        "unit-options-for-a-unit-that-does-not-exist",
        append('[units."other.service"]\nstart = false\n'),
        ('units."other.service"', "no such unit"),
        BUNDLE,
    ),
    Case(
        "enable-without-install-section",
        lambda p: (
            replace("[Install]\nWantedBy=multi-user.target\n", "", UNIT)(p),
            append('[units."demo-svc.service"]\nenable = true\n')(p),
        ),
        ("no [Install] section",),
        BUNDLE,
    ),
    # --- malformed TOML and wrong types: configuration errors (2) ---
    Case("toml-unclosed-table", append("[install\n"), ("debship.toml", "not valid TOML"), CONFIG),
    Case("toml-duplicate-key", append('name = "again"\n'), ("debship.toml", "not valid TOML"), CONFIG),
    Case(
        "toml-not-utf8",
        write("debship.toml", b'# caf\xe9\nname = "x"\n'),
        ("debship.toml", "not UTF-8", "save it as UTF-8"),
        CONFIG,
    ),
    Case(
        "pyproject-tool-is-a-list",
        as_pyproject('tool = ["debship"]\n'),
        ("pyproject.toml", "'tool' must be a table"),
        CONFIG,
    ),
    Case(
        "pyproject-debship-is-a-string",
        as_pyproject('[tool]\ndebship = "demo"\n'),
        ("pyproject.toml", "'tool.debship' must be a table"),
        CONFIG,
    ),
    Case("name-is-an-int", replace('name = "demo-svc"', "name = 1"), ("'name' must be a string",), CONFIG),
    Case(
        "description-is-a-list",
        replace('description = "demo service for tests"', 'description = ["a"]'),
        ("'description' must be a string",),
        CONFIG,
    ),
    Case("version-is-a-bool", replace('version = "1.0.0"', "version = true"), ("version", "non-empty string"), CONFIG),
    Case("version-is-a-float", replace('version = "1.0.0"', "version = 1.0"), ("version", "non-empty string"), CONFIG),
    Case(
        "depends-is-a-string",
        replace('depends = ["python3"]', 'depends = "python3"'),
        ("'depends' must be a list of strings",),
        CONFIG,
    ),
    Case(
        "depends-nested-list",
        replace('depends = ["python3"]', 'depends = [["python3"]]'),
        ("'depends' must be a list of strings",),
        CONFIG,
    ),
    Case("keep-versions-is-a-string", append('keep-versions = "5"\n'), ("'keep-versions'", "whole number"), CONFIG),
    Case("keep-versions-is-zero", append("keep-versions = 0\n"), ("'keep-versions'", "at least 1"), CONFIG),
    Case("keep-versions-is-a-bool", append("keep-versions = true\n"), ("'keep-versions'",), CONFIG),
    Case("startup-is-true", replace("startup = false", "startup = true"), ("'startup'", "or false"), CONFIG),
    Case(
        "startup-is-absolute",
        replace("startup = false", 'startup = "/usr/bin/boot.py"'),
        ("'startup'", "inside the scripts folder"),
        CONFIG,
    ),
    Case(
        "architecture-is-an-int", append("architecture = 64\n"), ("'architecture' must be a one-line string",), CONFIG
    ),
    Case("architecture-bad", append('architecture = "x86_64"\n'), ("architecture 'x86_64' is invalid",), CONFIG),
    Case(
        "priority-extra",
        append('priority = "extra"\n'),
        ("priority 'extra' is not a Debian priority", "use optional"),
        CONFIG,
    ),
    Case("priority-unknown", append('priority = "high"\n'), ("priority 'high'",), CONFIG),
    Case(
        "section-unknown",
        append('section = "tools"\n'),
        ("section 'tools' is not a Debian archive section", "admin, utils"),
        CONFIG,
    ),
    Case("section-bad-area", append('section = "private/admin"\n'), ("section 'private/admin'",), CONFIG),
    Case("homepage-is-a-table", append("[homepage]\nurl = 'x'\n"), ("'homepage' must be a one-line string",), CONFIG),
    Case(
        "health-is-multi-line",
        append('health = """curl -f localhost\nexit 0"""\n'),
        ("'health' must be a one-line string",),
        CONFIG,
    ),
    Case("folders-is-a-string", append('folders = "units"\n'), ("'folders' must be a table",), CONFIG),
    Case("folders-kind-is-an-int", append("[folders]\nunits = 1\n"), ("folders.units", "or false"), CONFIG),
    Case("install-is-a-list", append('install = ["/opt"]\n'), ("'install' must be a table",), CONFIG),
    Case("install-relative", append('[install]\nscripts = "opt/{name}"\n'), ("install.scripts", "absolute"), CONFIG),
    Case("install-is-root", append('[install]\nconfigs = "/"\n'), ("install.configs", "absolute folder"), CONFIG),
    Case("install-trailing-dotdot", append('[install]\nconfigs = "/etc/{name}/.."\n'), ("install.configs",), CONFIG),
    Case(
        "install-unknown-placeholder",
        append('[install]\nscripts = "/opt/{nme}"\n'),
        ("install.scripts", "{nme}", "only placeholder is {name}"),
        CONFIG,
    ),
    Case(
        "install-unclosed-brace",
        append('[install]\nscripts = "/opt/{name"\n'),
        ("install.scripts", "only placeholder is {name}"),
        CONFIG,
    ),
    Case(
        "install-positional-placeholder",
        append('[install]\nscripts = "/opt/{0}"\n'),
        ("install.scripts", "only placeholder is {name}"),
        CONFIG,
    ),
    Case(
        "install-unknown-kind", append('[install]\ndocs = "/usr/share/doc"\n'), ("install: unknown key 'docs'",), CONFIG
    ),
    Case("units-is-a-list", append('units = ["demo-svc.service"]\n'), ("'units' must be a table",), CONFIG),
    Case(
        "unit-options-not-a-table",
        append('[units]\n"demo-svc.service" = true\n'),
        ('units."demo-svc.service"', "must be a table"),
        CONFIG,
    ),
    Case(
        "unit-enable-is-a-string",
        append('[units."demo-svc.service"]\nenable = "yes"\n'),
        ("'enable' must be true or false",),
        CONFIG,
    ),
    Case(
        "unit-bad-on-upgrade",
        append('[units."demo-svc.service"]\non-upgrade = "reload"\n'),
        ("on-upgrade must be one of restart, stop, none",),
        CONFIG,
    ),
    Case(
        "unit-options-bad-suffix",
        append('[units."demo-svc.conf"]\nstart = false\n'),
        ('units."demo-svc.conf"', "not a unit file name"),
        CONFIG,
    ),
    Case(
        "unit-options-unknown-key",
        append('[units."demo-svc.service"]\nrestart = true\n'),
        ("unknown key 'restart'",),
        CONFIG,
    ),
    Case("description-too-long", replace("demo service for tests", "d" * 81), ("description", "at most 80"), CONFIG),
    Case(
        "description-multi-line",
        replace('"demo service for tests"', '"""demo\nservice"""'),
        ("'description' must be a one-line string",),
        CONFIG,
    ),
    Case("long-description-is-an-int", append("long-description = 5\n"), ("'long-description'",), CONFIG),
    Case(
        "maintainer-without-email",
        replace("Demo Team <demo@example.com>", "Demo Team"),
        ("maintainer 'Demo Team'", "Full Name <user@example.com>"),
        CONFIG,
    ),
    Case(
        "maintainer-two-people",
        replace("Demo Team <demo@example.com>", "A <a@example.com>, B <b@example.com>"),
        ("maintainer", "Full Name <user@example.com>"),
        CONFIG,
    ),
    Case("version-with-a-tab", replace('"1.0.0"', '"1.0\\t0"'), ("whitespace",), CONFIG),
    Case("epoch-too-large", replace('"1.0.0"', '"99999999999:1.0"'), ("epoch 99999999999 is too large",), CONFIG),
    Case("epoch-negative", replace('"1.0.0"', '"-1:1.0"'), ("must be a number",), CONFIG),
    Case("epoch-not-a-number", replace('"1.0.0"', '"1.5:1.0"'), ("epoch '1.5'",), CONFIG),
    Case("depends-unclosed-paren", replace('"python3"', '"curl (>= 7"'), ("depends entry 'curl (>= 7'",), CONFIG),
    Case("depends-bad-operator", replace('"python3"', '"curl (=> 7.0)"'), ("depends entry",), CONFIG),
    Case("depends-arch-restriction", replace('"python3"', '"curl [amd64]"'), ("depends entry",), CONFIG),
    Case("depends-comma-in-one-entry", replace('"python3"', '"curl, jq"'), ("depends entry 'curl, jq'",), CONFIG),
    Case("depends-substvar", replace('"python3"', '"${misc:Depends}"'), ("depends entry",), CONFIG),
    Case("depends-empty-alternative", replace('"python3"', '"curl | "'), ("depends entry 'curl | '",), CONFIG),
    Case(
        "allow-secrets-is-a-string",
        append('allow-secrets = "configs/x.key"\n'),
        ("'allow-secrets' must be a list",),
        CONFIG,
    ),
    Case(
        "allow-secrets-escapes", append('allow-secrets = ["../id_rsa"]\n'), ("allow-secrets entry '../id_rsa'",), CONFIG
    ),
    # --- the bundle: names, links, file types, units (3) ---
    Case("name-with-line-separator", write("configs/a\u2028b.conf", "x\n"), ("whitespace or control",), BUNDLE),
    Case("name-with-escape-char", write("configs/a\x1bb.conf", "x\n"), ("whitespace or control",), BUNDLE),
    Case(
        "symlink-loop",
        lambda p: (os.symlink("b.conf", p / "configs/a.conf"), os.symlink("a.conf", p / "configs/b.conf")),
        ("configs/a.conf", "symlink loop", "point it at a real file"),
        BUNDLE,
    ),
    Case("symlink-to-itself", symlink("configs/self.conf", "self.conf"), ("self.conf", "symlink loop"), BUNDLE),
    Case(
        "absolute-symlink-out-of-the-bundle",
        symlink("configs/hosts.conf", "/etc/hostname"),
        ("hosts.conf", "points outside", "copy the file into the bundle"),
        BUNDLE,
    ),
    Case("symlink-to-dev-null", symlink("configs/null.conf", "/dev/null"), ("null.conf", "points outside"), BUNDLE),
    Case("fifo", fifo("configs/pipe.conf"), ("pipe.conf", "not a regular file (a FIFO)", "remove it"), BUNDLE),
    Case(
        "symlink-to-a-fifo",
        lambda p: (os.mkfifo(p / "configs/pipe"), os.symlink("pipe", p / "configs/p.conf")),
        ("not a regular file (a FIFO)",),
        BUNDLE,
    ),
    Case("unix-socket", unix_socket("configs/ctl.sock"), ("ctl.sock", "(a socket)"), BUNDLE),
    Case(
        "file-over-2-gib",
        sparse("configs/huge.img", (2 << 30) + 1),
        ("huge.img", "over the 2 GiB limit", "keep large data out of the bundle"),
        BUNDLE,
    ),
    Case("empty-unit", write(UNIT, b""), ("demo-svc.service", "needs a [Service] section"), BUNDLE),
    Case("unit-not-utf8", write(UNIT, b"[Unit]\nDescription=caf\xe9\n"), ("demo-svc.service", "not UTF-8"), BUNDLE),
    Case(
        "unit-bad-suffix",
        write("units/extra.servce", "[Unit]\n"),
        ("extra.servce", "not a unit file name", "*.service"),
        BUNDLE,
    ),
    Case("unit-without-suffix", write("units/README", "notes\n"), ("units/README", "not a unit file name"), BUNDLE),
    Case(
        "unit-invalid-name",
        write("units/demo!.service", "[Service]\nExecStart=/bin/true\n"),
        ("'demo!.service' is not a valid unit name",),
        BUNDLE,
    ),
    Case(
        "unit-name-twice-in-subfolders",
        lambda p: (
            write("units/a/x.service", "[Service]\nExecStart=/bin/true\n")(p),
            write("units/b/x.service", "[Service]\nExecStart=/bin/true\n")(p),
        ),
        ("units/a/x.service", "put units at the top of the units folder"),
        BUNDLE,
    ),
    Case(
        "dropin-not-conf",
        write("units/demo-svc.service.d/override.txt", "[Service]\n"),
        ("override.txt", "drop-ins in <unit>.d/*.conf"),
        BUNDLE,
    ),
    Case(
        "unit-in-scripts-and-units",
        lambda p: (
            append('[install]\nscripts = "/usr/lib/systemd/system"\n')(p),
            write("scripts/demo-svc.service", "x\n")(p),
        ),
        ("both install to /usr/lib/systemd/system/demo-svc.service",),
        BUNDLE,
    ),
    Case(
        "unit-user-nobody-creates",
        unit_line("User=demo-svc"),
        ("demo-svc.service", "User=demo-svc", "DynamicUser=yes", "host-accounts"),
        BUNDLE,
    ),
    Case(
        "unit-user-another-listed",
        lambda p: (append('host-accounts = ["postgres"]\n')(p), unit_line("User=pg")(p)),
        ("User=pg", "host-accounts"),
        BUNDLE,
    ),
    Case(
        "install-in-usr-local",
        append('[install]\nscripts = "/usr/local/bin"\n'),
        ('install.scripts = "/usr/local/bin"', "belongs to the local admin", '"/usr/lib/{name}" or "/opt/{name}"'),
        CONFIG,
    ),
    Case(
        "install-in-srv",
        append('[install]\nconfigs = "/srv/{name}"\n'),
        ('install.configs = "/srv/{name}"', "belongs to the local admin", '"/var/lib/{name}" or "/opt/{name}"'),
        CONFIG,
    ),
    Case(
        "host-accounts-is-a-string",
        append('host-accounts = "postgres"\n'),
        ("'host-accounts' must be a list", '["postgres"]'),
        CONFIG,
    ),
    Case(
        "host-accounts-bad-name",
        append('host-accounts = ["Postgres DB"]\n'),
        ("host-accounts entry 'Postgres DB'", "lower-case"),
        CONFIG,
    ),
    Case("unit-group-nobody-creates", unit_line("Group=demo"), ("Group=demo", "DynamicUser=yes"), BUNDLE),
    Case("unit-user-nobody", unit_line("User=nobody"), ("User=nobody", "unsafe", "DynamicUser=yes"), BUNDLE),
    Case(
        "unit-supplementary-group",
        unit_line("SupplementaryGroups=adm ssl-cert"),
        ("SupplementaryGroups=ssl-cert",),
        BUNDLE,
    ),
    # --- values that would build a package dpkg refuses or lintian flags (issue 26) ---
    Case(
        "architecture-any", append('architecture = "any"\n'), ("architecture 'any' is a wildcard", "use 'all'"), CONFIG
    ),
    Case("architecture-linux-any", append('architecture = "linux-any"\n'), ("'linux-any' is a wildcard",), CONFIG),
    Case("architecture-any-amd64", append('architecture = "any-amd64"\n'), ("'any-amd64' is a wildcard",), CONFIG),
    Case(
        "description-starts-with-name",
        replace("demo service for tests", "demo-svc runs the demo"),
        ("description starts with the package name 'demo-svc'", "say what it does"),
        CONFIG,
    ),
    Case(
        "long-description-equals-synopsis",
        append('long-description = "Demo service  for tests"\n'),
        ("long-description repeats description", "say more"),
        CONFIG,
    ),
    Case(
        "depends-on-essential-unversioned",
        replace('"python3"', '"python3", "bash"'),
        ("depends entry 'bash' is an essential package", "bash (>= 1.0)"),
        CONFIG,
    ),
    Case("depends-on-dpkg-unversioned", replace('"python3"', '"dpkg", "python3"'), ("'dpkg' is an essential",), CONFIG),
    Case(
        "depends-on-essential-with-arch",
        replace('"python3"', '"python3", "coreutils:any"'),
        ("'coreutils:any' is an essential",),
        CONFIG,
    ),
    Case(
        "python3-script-without-python3",
        replace('depends = ["python3"]', "depends = []"),
        ("serve.py", "a python3 script (#!/usr/bin/python3)", 'add "python3" to depends'),
        BUNDLE,
    ),
    Case(
        "python3-env-script-without-python3",
        lambda p: (
            replace('depends = ["python3"]', 'depends = ["curl"]')(p),
            write("scripts/serve.py", "#!/usr/bin/env python3\n")(p),
        ),
        ("serve.py", "python3 script", 'add "python3" to depends'),
        BUNDLE,
    ),
    Case(
        "configs-outside-etc",
        append('[install]\nconfigs = "/usr/share/{name}"\n'),
        ('install.configs = "/usr/share/demo-svc"', "under /etc", '"/etc/{name}"'),
        CONFIG,
    ),
    Case(
        "configs-at-etc-lookalike",
        append('[install]\nconfigs = "/etcetera/{name}"\n'),
        ("install.configs", "under /etc"),
        CONFIG,
    ),
    Case(
        "scripts-under-etc",
        append('[install]\nscripts = "/etc/{name}/bin"\n'),
        ('install.scripts = "/etc/demo-svc/bin" is under /etc', '"/usr/lib/{name}"'),
        CONFIG,
    ),
    Case(
        "units-outside-unit-folders",
        append('[install]\nunits = "/etc/systemd/system"\n'),
        ('install.units = "/etc/systemd/system"', '"/usr/lib/systemd/system"'),
        CONFIG,
    ),
    Case(
        "units-in-user-folder",
        append('[install]\nunits = "/usr/lib/systemd/user"\n'),
        ("install.units", "not where systemd loads packaged units"),
        CONFIG,
    ),
    Case(
        "homepage-without-scheme",
        append('homepage = "example.com/demo"\n'),
        ("homepage 'example.com/demo' is not a web address", '"https://example.com/project"'),
        CONFIG,
    ),
    Case("homepage-ftp", append('homepage = "ftp://example.com/demo"\n'), ("homepage 'ftp://",), CONFIG),
    Case(
        "unit-socket-without-its-service",
        write("units/api.socket", "[Socket]\nListenStream=8080\n"),
        ("api.socket", "activates api.service", "add units/api.service"),
        BUNDLE,
    ),
    Case(
        "unit-exec-unbalanced-quote",
        unit_line("ExecStartPre=/bin/echo 'oops"),
        ("demo-svc.service:8:", "unbalanced quoting"),
        BUNDLE,
    ),
    Case(
        "unit-exec-relative-path",
        unit_line("ExecStartPost=bin/after"),
        ("demo-svc.service:8:", "neither an absolute path"),
        BUNDLE,
    ),
    Case(
        "unit-exec-script-not-in-bundle",
        unit_line("ExecReload=/bin/sh /usr/lib/demo-svc/reload.sh"),
        ("demo-svc.service:8:", "ExecReload= runs /usr/lib/demo-svc/reload.sh", "not in the bundle"),
        BUNDLE,
    ),
    Case(
        "allow-secrets-names-no-file",
        append('allow-secrets = ["configs/tls/server.key"]\n'),
        ("allow-secrets entry 'configs/tls/server.key'", "no such file"),
        BUNDLE,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(project, case):
    case.breaks(project)
    refused(project, *case.expect, code=case.code)


def test_the_table_is_big_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def builds_with_warnings(project: Path) -> list[str]:
    """Build ``project``; it must succeed; return the warning lines printed on stderr."""
    out = project.parent / "out"
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert len(list(out.iterdir())) == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("build-deb: warning: ") for line in lines), lines
    return lines


def test_a_unit_line_without_equals_is_a_warning_as_in_systemd(project):
    # systemd: "Missing '=', ignoring line." and the unit loads
    replace("Restart=on-failure", "Restart on failure", UNIT)(project)
    (line,) = builds_with_warnings(project)
    assert "demo-svc.service:7:" in line and "has no '='" in line and "write Key=value" in line


def test_unit_unknown_section_is_a_warning_with_a_suggestion(project):
    # systemd: "Unknown section 'Instal'. Ignoring." -- the unit loads, not enabled
    replace("[Install]", "[Instal]", UNIT)(project)
    (line,) = builds_with_warnings(project)
    assert "demo-svc.service:9: unknown section [Instal]" in line and "did you mean [Install]?" in line


def test_unit_setting_systemd_refuses(project):
    # a check only systemd makes: a mount unit's name must be its Where= path, escaped
    require_tool("systemd-analyze")
    write("units/srv-data.mount", "[Mount]\nWhat=/dev/sdb1\nWhere=/srv/other\n")(project)
    refused(
        project,
        "srv-data.mount: systemd-analyze verify refuses the unit",
        "Where= setting doesn't match unit name",
        code=BUNDLE,
    )


def test_unit_value_systemd_ignores_is_a_warning(project):
    require_tool("systemd-analyze")
    replace("Restart=on-failure", "Restart=sometimes", UNIT)(project)
    (line,) = builds_with_warnings(project)
    assert "demo-svc.service:7: systemd-analyze verify:" in line and "sometimes" in line
    assert "/tmp/debship-verify" not in line


def test_invalid_version_on_the_command_line(project):
    refused(project, "_1.0", args=("--version", "_1.0"), code=CONFIG)


def test_bad_source_date_epoch(project, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    refused(project, "SOURCE_DATE_EPOCH", code=CONFIG)


def test_out_is_a_file(project, tmp_path):
    target = tmp_path / "out-file"
    target.write_text("")
    runner = cli_runner()
    result = runner.invoke(build_deb, ["--project", str(project), "--out", str(target)])
    assert result.exit_code != 0
    assert "Traceback" not in (result.stderr or "")


def test_unreadable_file(project, tmp_path):
    """Root reads every file, so the build runs in a user namespace where it is
    an ordinary owner without CAP_DAC_OVERRIDE; a mode-000 file is then really
    unreadable (no test double)."""
    unshare = require_tool("unshare")
    secret = project / "configs" / "secret.conf"
    secret.write_text("token=1\n")
    secret.chmod(0o000)
    out = tmp_path / "out"
    out.mkdir()
    build = Path(shutil.which("build-deb") or Path(sys.executable).parent / "build-deb")
    proc = subprocess.run(
        [unshare, "--user", str(build), "--project", str(project), "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"build-deb: error: {secret}: cannot read the file (permission denied); fix its permissions"
    ]
    assert list(out.iterdir()) == []


def test_device_file_in_the_bundle(project):
    require_root()
    os.mknod(project / "configs" / "null.conf", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    refused(project, "null.conf", "not a regular file (a character device)", code=BUNDLE)


@pytest.mark.parametrize(
    "make_out",
    [
        lambda tmp: tmp / "a-file" / "out",  # under a regular file
        lambda tmp: Path("/proc/debship-out"),  # where nothing can be created
    ],
    ids=["under-a-file", "in-proc"],
)
def test_out_folder_that_cannot_be_created(project, tmp_path, make_out):
    (tmp_path / "a-file").write_text("")
    out = make_out(tmp_path)
    refused(project, f"--out {out}", "cannot create the output folder", "pass --out", code=WRITE, out=out)


# --- inputs that look odd but are fine: they build ---


def test_the_minimal_project_builds(project):
    out = project.parent / "out"
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in sorted(out.iterdir())] == ["demo-svc_1.0.0_all.deb"]
    assert result.stdout.strip().splitlines()[-1].endswith("demo-svc_1.0.0_all.deb")


@pytest.mark.parametrize("user", ["www-data", "root", "0"])
def test_units_may_run_as_users_every_host_has(project, user):
    unit_line(f"User={user}\nGroup=adm")(project)
    builds(project)


@pytest.mark.parametrize("section, priority", [("contrib/net", "standard"), ("non-free-firmware/kernel", "required")])
def test_an_area_before_the_section_and_every_policy_priority_build(project, section, priority):
    append(f'section = "{section}"\npriority = "{priority}"\n')(project)
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(builds(project)), "Section", "Priority"], capture_output=True, text=True, check=True
    ).stdout
    assert fields == f"Section: {section}\nPriority: {priority}\n"


def test_a_template_may_run_as_its_instance_name(project):
    write("units/job@.service", "[Service]\nExecStart=/bin/true\nUser=%i\n")(project)
    builds(project)


def test_units_may_run_as_accounts_listed_in_host_accounts(project):
    append('host-accounts = ["postgres", "ssl-cert"]\n')(project)
    unit_line("User=postgres\nGroup=postgres\nSupplementaryGroups=ssl-cert")(project)
    builds(project)


def test_dynamic_user_may_name_any_user(project):
    unit_line("DynamicUser=yes\nUser=demo-svc\nGroup=demo-svc")(project)
    builds(project)


def test_unicode_names_and_symlinks_inside_the_bundle_build(project):
    write("configs/café.conf", "x\n")(project)
    os.symlink(project / "configs" / "demo.conf", project / "configs" / "absolute-link.conf")
    write("units/demo-svc.service.d/override.conf", "[Service]\nEnvironment=X=1\n")(project)
    deb = builds(project)
    from debian.debfile import DebFile

    names = DebFile(str(deb)).data.tgz().getnames()
    assert "./etc/demo-svc/café.conf" in names
    assert "./etc/demo-svc/absolute-link.conf" in names
    assert "./usr/lib/systemd/system/demo-svc.service.d/override.conf" in names


# --- what the checks above must let through: read back with dpkg-deb ---


def test_an_executable_config_is_installed_0644_with_a_warning(project):
    conf = project / "configs" / "demo.conf"
    conf.chmod(0o755)
    out = project.parent / "out"
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("build-deb: warning: ") and "demo.conf: executable in the bundle" in line
    assert "installed 0644 as the conffile /etc/demo-svc/demo.conf" in line
    listing = subprocess.run(
        ["dpkg-deb", "-c", result.stdout.strip().splitlines()[-1]], capture_output=True, text=True, check=True
    ).stdout
    assert any(
        row.startswith("-rw-r--r--") and row.endswith("./etc/demo-svc/demo.conf") for row in listing.splitlines()
    )


@pytest.mark.parametrize(
    "extra",
    [
        'homepage = "https://example.com/demo"\nlong-description = "Serves the demo, for the tests."\n',
        'architecture = "amd64"\n',
        '[install]\nunits = "/usr/lib/systemd/system"\nscripts = "/opt/demo-svc"\nconfigs = "/etc/demo/sub"\n',
    ],
)
def test_values_dpkg_and_lintian_accept_build(project, extra):
    append(extra)(project)
    deb = builds(project)
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Package: demo-svc" in info


@pytest.mark.parametrize(
    "depends",
    [
        '["python3", "bash (>= 5.0)"]',
        '["python3", "bash | zsh"]',
        '["python3:any", "coreutils (>= 9)"]',
        '["python3.11", "bash:any (>= 5)"]',
    ],
)
def test_versioned_essential_dependencies_and_python3_forms_build(project, depends):
    replace('depends = ["python3"]', f"depends = {depends}")(project)
    deb = builds(project)
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True).stdout
    assert fields.strip() == ", ".join(__import__("json").loads(depends))


def test_a_python3_script_without_python3_builds_when_startup_brings_it(project):
    replace('depends = ["python3"]', "depends = []")(project)
    replace("startup = false", 'startup = "serve.py"')(project)
    deb = builds(project)
    assert (
        "python3"
        in subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True).stdout
    )


def test_an_absent_default_folder_is_none_of_that_kind(project):
    """A project with no units/ (or configs/, scripts/) simply has none: it builds without them."""
    remove("units")(project)
    remove("configs")(project)
    assert builds(project).name == "demo-svc_1.0.0_all.deb"


def test_the_default_startup_is_optional_a_named_one_is_not(project):
    replace("startup = false\n", "")(project)
    builds(project)  # no scripts/startup.py: no startup step
    shutil.rmtree(project.parent / "out")
    replace('name = "demo-svc"', 'name = "demo-svc"\nstartup = "startup.py"')(project)
    refused(project, "startup = 'startup.py'", "no such file", code=BUNDLE)
