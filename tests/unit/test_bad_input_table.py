"""More bad input, as a table, through the real ``build-deb`` command.

Each case breaks the minimal project of ``conftest.project`` in one way and
expects: exit code per the README table (2 configuration, 3 bundle, 4 write),
exactly one line on stderr starting ``build-deb: error: `` that holds the
expected words (the file or key, and the fix), no traceback, and an output
folder that is absent or empty.  Cases already in ``test_bad_input.py`` are not
repeated here.
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from builder.cli import build_deb

from tests.helpers import cli_runner, require_root

CONFIG, BUNDLE, WRITE = 2, 3, 4


def refused(project: Path, *expect: str, code: int, out: Path | None = None) -> str:
    """Run build-deb on ``project`` and check it refused as a bad input must; return the message."""
    out = out or project.parent / "out"
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"unexpected exception: {result.exception!r}"
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
    # --- malformed TOML and wrong types: configuration errors (2) ---
    Case("toml-unclosed-table", append("[install\n"), ("debship.toml", "not valid TOML"), CONFIG),
    Case("toml-duplicate-key", append('name = "again"\n'), ("debship.toml", "not valid TOML"), CONFIG),
    Case("toml-not-utf8", write("debship.toml", b'# caf\xe9\nname = "x"\n'), ("debship.toml", "not UTF-8",
         "save it as UTF-8"), CONFIG),
    Case("pyproject-tool-is-a-list", as_pyproject('tool = ["debship"]\n'), ("pyproject.toml", "'tool' must be a table"),
         CONFIG),
    Case("pyproject-debship-is-a-string", as_pyproject('[tool]\ndebship = "demo"\n'),
         ("pyproject.toml", "'tool.debship' must be a table"), CONFIG),
    Case("name-is-an-int", replace('name = "demo-svc"', "name = 1"), ("'name' must be a string",), CONFIG),
    Case("description-is-a-list", replace('description = "demo service for tests"', 'description = ["a"]'),
         ("'description' must be a string",), CONFIG),
    Case("version-is-a-bool", replace('version = "1.0.0"', "version = true"), ("version", "non-empty string"),
         CONFIG),
    Case("version-is-a-float", replace('version = "1.0.0"', "version = 1.0"), ("version", "non-empty string"),
         CONFIG),
    Case("depends-is-a-string", replace('depends = ["python3"]', 'depends = "python3"'),
         ("'depends' must be a list of strings",), CONFIG),
    Case("depends-nested-list", replace('depends = ["python3"]', 'depends = [["python3"]]'),
         ("'depends' must be a list of strings",), CONFIG),
    Case("keep-versions-is-a-string", append('keep-versions = "5"\n'), ("'keep-versions'", "whole number"), CONFIG),
    Case("keep-versions-is-zero", append("keep-versions = 0\n"), ("'keep-versions'", "at least 1"), CONFIG),
    Case("keep-versions-is-a-bool", append("keep-versions = true\n"), ("'keep-versions'",), CONFIG),
    Case("startup-is-true", replace("startup = false", "startup = true"), ("'startup'", "or false"), CONFIG),
    Case("startup-is-absolute", replace("startup = false", 'startup = "/usr/bin/boot.py"'),
         ("'startup'", "inside the scripts folder"), CONFIG),
    Case("architecture-is-an-int", append("architecture = 64\n"), ("'architecture' must be a one-line string",),
         CONFIG),
    Case("architecture-bad", append('architecture = "x86_64"\n'), ("architecture 'x86_64' is invalid",), CONFIG),
    Case("priority-extra", append('priority = "extra"\n'), ("priority 'extra' is not a Debian priority",
                                                            "use optional"), CONFIG),
    Case("priority-unknown", append('priority = "high"\n'), ("priority 'high'",), CONFIG),
    Case("section-unknown", append('section = "tools"\n'), ("section 'tools' is not a Debian archive section",
                                                            "admin, utils"), CONFIG),
    Case("section-bad-area", append('section = "private/admin"\n'), ("section 'private/admin'",), CONFIG),
    Case("homepage-is-a-table", append("[homepage]\nurl = 'x'\n"), ("'homepage' must be a one-line string",),
         CONFIG),
    Case("health-is-multi-line", append('health = """curl -f localhost\nexit 0"""\n'),
         ("'health' must be a one-line string",), CONFIG),
    Case("folders-is-a-string", append('folders = "units"\n'), ("'folders' must be a table",), CONFIG),
    Case("folders-kind-is-an-int", append("[folders]\nunits = 1\n"), ("folders.units", "or false"), CONFIG),
    Case("install-is-a-list", append('install = ["/opt"]\n'), ("'install' must be a table",), CONFIG),
    Case("install-relative", append('[install]\nscripts = "opt/{name}"\n'), ("install.scripts", "absolute"),
         CONFIG),
    Case("install-is-root", append('[install]\nconfigs = "/"\n'), ("install.configs", "absolute folder"), CONFIG),
    Case("install-trailing-dotdot", append('[install]\nconfigs = "/etc/{name}/.."\n'), ("install.configs",),
         CONFIG),
    Case("install-unknown-placeholder", append('[install]\nscripts = "/opt/{nme}"\n'),
         ("install.scripts", "{nme}", "only placeholder is {name}"), CONFIG),
    Case("install-unclosed-brace", append('[install]\nscripts = "/opt/{name"\n'),
         ("install.scripts", "only placeholder is {name}"), CONFIG),
    Case("install-positional-placeholder", append('[install]\nscripts = "/opt/{0}"\n'),
         ("install.scripts", "only placeholder is {name}"), CONFIG),
    Case("install-unknown-kind", append('[install]\ndocs = "/usr/share/doc"\n'), ("install: unknown key 'docs'",),
         CONFIG),
    Case("units-is-a-list", append('units = ["demo-svc.service"]\n'), ("'units' must be a table",), CONFIG),
    Case("unit-options-not-a-table", append('[units]\n"demo-svc.service" = true\n'),
         ('units."demo-svc.service"', "must be a table"), CONFIG),
    Case("unit-enable-is-a-string", append('[units."demo-svc.service"]\nenable = "yes"\n'),
         ("'enable' must be true or false",), CONFIG),
    Case("unit-bad-on-upgrade", append('[units."demo-svc.service"]\non-upgrade = "reload"\n'),
         ("on-upgrade must be one of restart, stop, none",), CONFIG),
    Case("unit-options-bad-suffix", append('[units."demo-svc.conf"]\nstart = false\n'),
         ('units."demo-svc.conf"', "not a unit file name"), CONFIG),
    Case("unit-options-unknown-key", append('[units."demo-svc.service"]\nrestart = true\n'),
         ("unknown key 'restart'",), CONFIG),
    Case("description-too-long", replace("demo service for tests", "d" * 81), ("description", "at most 80"),
         CONFIG),
    Case("description-multi-line", replace('"demo service for tests"', '"""demo\nservice"""'),
         ("'description' must be a one-line string",), CONFIG),
    Case("long-description-is-an-int", append("long-description = 5\n"), ("'long-description'",), CONFIG),
    Case("maintainer-without-email", replace("Demo Team <demo@example.com>", "Demo Team"),
         ("maintainer 'Demo Team'", "Full Name <user@example.com>"), CONFIG),
    Case("maintainer-two-people", replace("Demo Team <demo@example.com>", "A <a@example.com>, B <b@example.com>"),
         ("maintainer", "Full Name <user@example.com>"), CONFIG),
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
    Case("allow-secrets-is-a-string", append('allow-secrets = "configs/x.key"\n'), ("'allow-secrets' must be a list",),
         CONFIG),
    Case("allow-secrets-escapes", append('allow-secrets = ["../id_rsa"]\n'), ("allow-secrets entry '../id_rsa'",),
         CONFIG),

    # --- the bundle: names, links, file types, units (3) ---
    Case("name-with-line-separator", write("configs/a\u2028b.conf", "x\n"), ("whitespace or control",), BUNDLE),
    Case("name-with-escape-char", write("configs/a\x1bb.conf", "x\n"), ("whitespace or control",), BUNDLE),
    Case("symlink-loop", lambda p: (os.symlink("b.conf", p / "configs/a.conf"),
                                    os.symlink("a.conf", p / "configs/b.conf")),
         ("configs/a.conf", "symlink loop", "point it at a real file"), BUNDLE),
    Case("symlink-to-itself", symlink("configs/self.conf", "self.conf"), ("self.conf", "symlink loop"), BUNDLE),
    Case("absolute-symlink-out-of-the-bundle", symlink("configs/hosts.conf", "/etc/hostname"),
         ("hosts.conf", "points outside", "copy the file into the bundle"), BUNDLE),
    Case("symlink-to-dev-null", symlink("configs/null.conf", "/dev/null"), ("null.conf", "points outside"), BUNDLE),
    Case("fifo", fifo("configs/pipe.conf"), ("pipe.conf", "not a regular file (a FIFO)", "remove it"), BUNDLE),
    Case("symlink-to-a-fifo", lambda p: (os.mkfifo(p / "configs/pipe"), os.symlink("pipe", p / "configs/p.conf")),
         ("not a regular file (a FIFO)",), BUNDLE),
    Case("unix-socket", unix_socket("configs/ctl.sock"), ("ctl.sock", "(a socket)"), BUNDLE),
    Case("file-over-2-gib", sparse("configs/huge.img", (2 << 30) + 1),
         ("huge.img", "over the 2 GiB limit", "keep large data out of the bundle"), BUNDLE),
    Case("empty-unit", write(UNIT, b""), ("demo-svc.service", "needs a [Service] section"), BUNDLE),
    Case("unit-not-utf8", write(UNIT, b"[Unit]\nDescription=caf\xe9\n"), ("demo-svc.service", "not UTF-8"), BUNDLE),
    Case("unit-bad-suffix", write("units/extra.servce", "[Unit]\n"), ("extra.servce", "not a unit file name",
         "*.service"), BUNDLE),
    Case("unit-without-suffix", write("units/README", "notes\n"), ("units/README", "not a unit file name"), BUNDLE),
    Case("unit-invalid-name", write("units/demo!.service", "[Service]\nExecStart=/bin/true\n"),
         ("'demo!.service' is not a valid unit name",), BUNDLE),
    Case("unit-name-twice-in-subfolders", lambda p: (write("units/a/x.service", "[Service]\nExecStart=/bin/true\n")(p),
                                                      write("units/b/x.service", "[Service]\nExecStart=/bin/true\n")(p)),
         ("units/a/x.service", "put units at the top of the units folder"), BUNDLE),
    Case("dropin-not-conf", write("units/demo-svc.service.d/override.txt", "[Service]\n"),
         ("override.txt", "drop-ins in <unit>.d/*.conf"), BUNDLE),
    Case("unit-in-configs-and-units", lambda p: (append('[install]\nconfigs = "/usr/lib/systemd/system"\n')(p),
                                                  write("configs/demo-svc.service", "x\n")(p)),
         ("both install to /usr/lib/systemd/system/demo-svc.service",), BUNDLE),
    Case("unit-user-nobody-creates", unit_line("User=demo-svc"),
         ("demo-svc.service", "User=demo-svc", "DynamicUser=yes", "host-accounts"), BUNDLE),
    Case("unit-user-another-listed", lambda p: (append('host-accounts = ["postgres"]\n')(p), unit_line("User=pg")(p)),
         ("User=pg", "host-accounts"), BUNDLE),
    Case("install-in-usr-local", append('[install]\nscripts = "/usr/local/bin"\n'),
         ('install.scripts = "/usr/local/bin"', "belongs to the local admin", '"/usr/lib/{name}" or "/opt/{name}"'),
         CONFIG),
    Case("install-in-srv", append('[install]\nconfigs = "/srv/{name}"\n'),
         ('install.configs = "/srv/{name}"', "belongs to the local admin", '"/var/lib/{name}" or "/opt/{name}"'),
         CONFIG),
    Case("host-accounts-is-a-string", append('host-accounts = "postgres"\n'),
         ("'host-accounts' must be a list", '["postgres"]'), CONFIG),
    Case("host-accounts-bad-name", append('host-accounts = ["Postgres DB"]\n'),
         ("host-accounts entry 'Postgres DB'", "lower-case"), CONFIG),
    Case("unit-group-nobody-creates", unit_line("Group=demo"), ("Group=demo", "DynamicUser=yes"), BUNDLE),
    Case("unit-user-nobody", unit_line("User=nobody"), ("User=nobody", "unsafe", "DynamicUser=yes"), BUNDLE),
    Case("unit-supplementary-group", unit_line("SupplementaryGroups=adm ssl-cert"),
         ("SupplementaryGroups=ssl-cert",), BUNDLE),
    Case("allow-secrets-names-no-file", append('allow-secrets = ["configs/tls/server.key"]\n'),
         ("allow-secrets entry 'configs/tls/server.key'", "no such file"), BUNDLE),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(project, case):
    case.breaks(project)
    refused(project, *case.expect, code=case.code)


def test_the_table_is_big_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_device_file_in_the_bundle(project):
    require_root()
    os.mknod(project / "configs" / "null.conf", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    refused(project, "null.conf", "not a regular file (a character device)", code=BUNDLE)


@pytest.mark.parametrize("make_out", [
    lambda tmp: tmp / "a-file" / "out",           # under a regular file
    lambda tmp: Path("/proc/debship-out"),        # where nothing can be created
], ids=["under-a-file", "in-proc"])
def test_out_folder_that_cannot_be_created(project, tmp_path, make_out):
    (tmp_path / "a-file").write_text("")
    out = make_out(tmp_path)
    refused(project, f"--out {out}", "cannot create the output folder", "pass --out", code=WRITE, out=out)


# --- inputs that look odd but are fine: they build ---

@pytest.mark.parametrize("user", ["www-data", "root", "0"])
def test_units_may_run_as_users_every_host_has(project, user):
    unit_line(f"User={user}\nGroup=adm")(project)
    builds(project)


@pytest.mark.parametrize("section, priority", [("contrib/net", "standard"), ("non-free-firmware/kernel", "required")])
def test_an_area_before_the_section_and_every_policy_priority_build(project, section, priority):
    append(f'section = "{section}"\npriority = "{priority}"\n')(project)
    fields = subprocess.run(["dpkg-deb", "-f", str(builds(project)), "Section", "Priority"],
                            capture_output=True, text=True, check=True).stdout
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
