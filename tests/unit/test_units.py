"""Unit files read as systemd reads them: what it refuses is an error, what it
loads with a complaint is a warning (docs/units.md).  The parser is pure; the
CLI cases build the minimal project with the real ``build-deb``."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import units
from builder.cli import build_deb
from builder.errors import PlanError
from tests.harness.helpers import cli_runner

UNIT = "units/demo-svc.service"


def parse(text: str, name: str = "x.service") -> units.UnitFile:
    return units.parse(Path("/bundle/units") / name, text)


# --- the Exec line grammar ---


@pytest.mark.parametrize(
    "value, expect",
    [
        ("/usr/bin/python3 /usr/lib/a/serve.py", [("", ["/usr/bin/python3", "/usr/lib/a/serve.py"])]),
        ("-/usr/lib/a/x --flag", [("-", ["/usr/lib/a/x", "--flag"])]),
        ("+-!/usr/lib/a/x", [("+-!", ["/usr/lib/a/x"])]),
        ("!!/usr/lib/a/x", [("!!", ["/usr/lib/a/x"])]),
        (":/usr/lib/a/x $HOME", [(":", ["/usr/lib/a/x", "$HOME"])]),
        ("@/usr/lib/a/x my-name arg", [("@", ["/usr/lib/a/x", "arg"])]),  # '@': the 2nd word is argv[0]
        ("/bin/sh -c 'echo a; exit 0'", [("", ["/bin/sh", "-c", "echo a; exit 0"])]),
        ('/bin/echo "a b" c\\x20d', [("", ["/bin/echo", "a b", "c d"])]),
        ('"/usr/lib/a/with space" x', [("", ["/usr/lib/a/with space", "x"])]),
        ("/bin/true ; /bin/false x", [("", ["/bin/true"]), ("", ["/bin/false", "x"])]),
        ("/bin/echo \\; x", [("", ["/bin/echo", ";", "x"])]),
        ("/usr/lib/a/%i.py %I", [("", ["/usr/lib/a/%i.py", "%I"])]),
    ],
)
def test_exec_lines_split_as_systemd_splits_them(value, expect):
    assert [(p, list(argv)) for p, argv in units.split_exec(value)] == expect


@pytest.mark.parametrize(
    "line, expect",
    [
        ("ExecStart=/usr/bin/python3 /usr/lib/a/serve.py", ["/usr/bin/python3", "/usr/lib/a/serve.py"]),
        ("ExecStart=/bin/bash /usr/lib/a/run.sh --now", ["/bin/bash", "/usr/lib/a/run.sh"]),
        ("ExecStart=/usr/bin/python3 -u -B /usr/lib/a/s.py", ["/usr/bin/python3", "/usr/lib/a/s.py"]),
        ("ExecStart=/bin/sh -c '/usr/lib/a/not-checked'", ["/bin/sh"]),  # a command, not a file
        ("ExecStart=/usr/bin/python3 -m a.serve /usr/lib/a/x", ["/usr/bin/python3"]),
        ("ExecStart=/usr/bin/docker run -v /etc/a/conf:/conf:ro img", ["/usr/bin/docker"]),  # arguments never
        ("ExecStart=/usr/bin/rsync -a /etc/a/ /srv/a/", ["/usr/bin/rsync"]),
        ("ExecStart=/usr/lib/a/%i.py", []),  # specifiers: host-time
        ("ExecStart=/usr/lib/a/100%%.sh", ["/usr/lib/a/100%.sh"]),
        ("ExecStart=-@/usr/lib/a/x name", ["/usr/lib/a/x"]),
        ("ExecStart=true", []),  # looked up in PATH
    ],
)
def test_only_the_program_and_a_clear_script_are_checked(line, expect):
    unit = parse(f"[Service]\n{line}\n")
    assert [p for _key, _line, p in units.exec_paths(unit)] == expect


@pytest.mark.parametrize(
    "line, expect",
    [
        ('ExecStart=/bin/echo "unterminated', "unbalanced quoting"),
        ("ExecStart=bin/run.sh", "neither an absolute path nor a plain name"),
        ("ExecStart=|/bin/true", "neither an absolute path"),
        ("ExecStart=-", "no program after its prefixes"),
    ],
)
def test_exec_lines_systemd_refuses_are_errors(line, expect):
    with pytest.raises(PlanError, match=expect) as e:
        parse(f"[Unit]\nDescription=x\n[Service]\n{line}\n")
    assert str(e.value).startswith("/bundle/units/x.service:4: ")


@pytest.mark.parametrize(
    "name, text, expect",
    [
        (
            "x.service",
            "[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=always\n",
            "Restart=always with Type=oneshot",
        ),
        ("x.service", "[Service]\nType=dbus\nExecStart=/bin/true\n", "Type=dbus needs BusName="),
        ("x.socket", "[Socket]\nAccept=yes\n", "needs one of ListenStream="),
        ("x.timer", "[Timer]\nPersistent=yes\n", "needs one of OnCalendar="),
        ("x.path", "[Path]\nUnit=x.service\n", "needs one of PathExists="),
    ],
)
def test_units_systemd_refuses_are_refused_without_systemd_analyze(name, text, expect):
    # the same refusals systemd-analyze verify makes ("Refusing."), decided by our parser on any machine
    with pytest.raises(PlanError, match=expect):
        parse(text, name)
    parse(
        text.replace("Restart=always", "Restart=on-failure")
        .replace("Type=dbus", "Type=dbus\nBusName=a.b")
        .replace("Accept=yes", "ListenStream=80")
        .replace("Persistent=yes", "OnCalendar=daily")
        .replace("Unit=x.service", "PathExists=/run/x"),
        name,
    )


def test_two_execstart_lines_need_oneshot_and_an_empty_one_resets():
    with pytest.raises(PlanError, match="2 ExecStart= lines"):
        parse("[Service]\nExecStart=/bin/true\nExecStart=/bin/false\n")
    parse("[Service]\nExecStart=/bin/true\nExecStart=\nExecStart=/bin/false\n")
    parse("[Service]\nType=oneshot\nExecStart=/bin/true\nExecStart=/bin/false\n")


# --- the file syntax ---


def test_a_byte_order_mark_and_a_comment_inside_a_continued_line_are_read_as_systemd_does():
    unit = parse(
        "\ufeff[Unit]\nDescription=x\n[Service]\nExecStart=/bin/echo a \\\n# a comment\n; another\n  b \\\n  c\n"
    )
    assert units.split_exec(unit.values("Service", "ExecStart")[0]) == [("", ["/bin/echo", "a", "b", "c"])]
    assert unit.warnings == ()
    assert [s.line for s in unit.settings] == [2, 4]


def test_a_blank_line_ends_a_continuation():
    unit = parse("[Service]\nExecStart=/bin/echo a \\\n\nc\n")
    assert unit.values("Service", "ExecStart") == ["/bin/echo a"]
    assert unit.warnings == ("/bundle/units/x.service:4: 'c' has no '=', systemd ignores the line; write Key=value",)


@pytest.mark.parametrize(
    "line, expect",
    [
        ("MemoryLimit=1G", "MemoryLimit= is deprecated in systemd; use MemoryMax="),
        ("CPUShares=100", "use CPUWeight="),
        ("StandardOutput=syslog", "StandardOutput=syslog is deprecated"),
        ("KillMode=none", "use KillMode=mixed or control-group"),
        ("PermissionsStartOnly=yes", "prefix the Exec lines"),
        ("ExecStrat=/bin/true", "unknown key 'ExecStrat' in [Service]"),
        ("Restartsec=3", "did you mean RestartSec=?"),
        ("ImportCredential=a", "new in systemd 254: Debian 12's systemd 252 ignores it"),
        ("NoSuchThingAtAll=1", "a newer systemd may know it, else remove it"),
        ("Documentation=man:x(1)", "it belongs in [Unit]"),
    ],
)
def test_deprecated_and_unknown_keys_are_warnings_naming_file_and_line(line, expect):
    unit = parse(f"[Service]\nExecStart=/bin/true\n{line}\n")
    (warning,) = unit.warnings
    assert warning.startswith("/bundle/units/x.service:3: ") and expect in warning, warning


def test_x_sections_and_x_keys_are_left_alone():
    unit = parse("[Service]\nExecStart=/bin/true\nX-Ours=1\n[X-Vendor]\nAnything=goes\n")
    assert unit.warnings == ()


def test_socket_without_its_service_is_refused_and_a_timer_only_warned():
    sock = parse("[Socket]\nListenStream=1234\n", "api.socket")
    with pytest.raises(PlanError, match="activates api.service, which is not in the units folder"):
        units.check_triggers(Path("/bundle/units/api.socket"), sock, {"api.socket"})
    assert units.check_triggers(Path("/b/api.socket"), sock, {"api.socket", "api.service"}) == []
    accept = parse("[Socket]\nListenStream=1234\nAccept=yes\n", "api.socket")
    assert units.check_triggers(Path("/b/api.socket"), accept, {"api@.service"}) == []
    named = parse("[Socket]\nListenStream=1234\nService=other.service\n", "api.socket")
    assert "other.service is not in the units folder" in units.check_triggers(Path("/b/api.socket"), named, set())[0]
    timer = parse("[Timer]\nOnCalendar=daily\n", "job.timer")
    assert "Unit=job.service is not in the units folder" in units.check_triggers(Path("/b/job.timer"), timer, set())[0]


# --- through build-deb ---


def build(project: Path):
    return cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(project.parent / "out")])


def set_unit_lines(project: Path, *lines: str) -> None:
    path = project / UNIT
    text = path.read_text()
    path.write_text(text.replace("ExecStart=/usr/bin/python3 /usr/lib/demo-svc/serve.py\n", "\n".join(lines) + "\n"))


@pytest.mark.parametrize(
    "lines",
    [
        ["ExecStart=/bin/sh -c 'exec /usr/lib/demo-svc/serve.py --port 80'"],
        ["ExecStart=/usr/bin/docker run -v /etc/demo-svc/demo.conf:/c:ro -v /usr/lib/demo-svc/x:/x img"],
        ["ExecStart=-/usr/lib/demo-svc/serve.py /etc/demo-svc/not-shipped.d/"],
        ["ExecStart=\"/usr/lib/demo-svc/serve.py\" 'quoted arg'"],
        ["ExecStart=/usr/bin/python3 \\", "  # the script:", "  /usr/lib/demo-svc/serve.py"],
        ["Type=oneshot", "ExecStart=/usr/lib/demo-svc/serve.py ; /bin/true"],
    ],
)
def test_exec_lines_systemd_accepts_build(project, lines):
    set_unit_lines(project, *lines)
    result = build(project)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_a_unit_with_a_byte_order_mark_builds(project):
    path = project / UNIT
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = build(project)
    assert result.exit_code == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize(
    "lines, expect",
    [
        (["ExecStart=/bin/bash /usr/lib/demo-svc/run.sh"], ":6: ExecStart= runs /usr/lib/demo-svc/run.sh"),
        (["ExecStart=+/usr/lib/demo-svc/serve"], ":6: ExecStart= runs /usr/lib/demo-svc/serve,"),
        (
            ["ExecStart=/usr/lib/demo-svc/serve.py", "ExecStartPre=/usr/bin/python3 -u /usr/lib/demo-svc/pre.py"],
            ":7: ExecStartPre= runs /usr/lib/demo-svc/pre.py",
        ),
    ],
)
def test_a_program_or_script_missing_from_the_bundle_is_refused_with_its_line(project, lines, expect):
    set_unit_lines(project, *lines)
    result = build(project)
    assert result.exit_code == 3
    assert result.stderr.startswith("build-deb: error: ") and expect in result.stderr, result.stderr
    assert "not in the bundle" in result.stderr


def test_deprecated_settings_build_with_one_warning_each(project):
    set_unit_lines(
        project,
        "ExecStart=/usr/lib/demo-svc/serve.py",
        "MemoryLimit=1G",
        "StandardOutput=syslog",
        "KillMode=none",
        "CPUShares=512",
        "Restartsec=5",
    )
    result = build(project)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 5, lines
    assert all(line.startswith("build-deb: warning: ") and "demo-svc.service:" in line for line in lines)
    assert "did you mean RestartSec=?" in lines[-1]
    assert Path(result.stdout.splitlines()[-1]).is_file()


def test_list_prints_the_warnings_too(project):
    set_unit_lines(project, "ExecStart=/usr/lib/demo-svc/serve.py", "MemoryLimit=1G")
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--list"])
    assert result.exit_code == 0
    assert "build-deb: warning: " in result.stderr and "use MemoryMax=" in result.stderr


def test_the_verdict_does_not_depend_on_the_build_machines_systemd(project, monkeypatch):
    """Newer keys and values, deprecations: built with systemd-analyze and without it (PATH emptied,
    as on a build machine with no systemd)."""
    set_unit_lines(
        project,
        "ExecStart=/usr/lib/demo-svc/serve.py",
        "Type=notify-reload",
        "RestartSteps=3",
        "MemoryLimit=1G",
        "ImportCredential=token",
    )
    with_tool = build(project)
    assert with_tool.exit_code == 0, with_tool.stderr
    monkeypatch.setenv("PATH", str(project / "no-tools-here"))
    without = build(project)
    assert without.exit_code == 0, without.stderr
    ours = [line for line in without.stderr.splitlines() if "systemd-analyze" not in line]
    assert len(ours) == 3 and ours == [line for line in with_tool.stderr.splitlines() if "systemd-analyze" not in line]


def test_drop_ins_are_read_with_the_same_rules(project):
    dropin = project / "units" / "demo-svc.service.d" / "limits.conf"
    dropin.parent.mkdir()
    dropin.write_text(
        "[Service]\nEnvironment=A=1\nMemoryLimit=1G\nExecStart=\n"
        "ExecStart=/usr/bin/python3 /usr/lib/demo-svc/serve.py --fast\n"
    )
    result = build(project)
    assert result.exit_code == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert "demo-svc.service.d/limits.conf:3: MemoryLimit= is deprecated" in line
    dropin.write_text("[Service]\nExecStartPre=/bin/bash /usr/lib/demo-svc/pre.sh\n")
    result = build(project)
    assert result.exit_code == 3
    assert "limits.conf:2: ExecStartPre= runs /usr/lib/demo-svc/pre.sh, which is not in the bundle" in result.stderr
    dropin.write_text("[Service]\nExecStartPre=/bin/echo 'oops\n")
    result = build(project)
    assert result.exit_code == 3 and "limits.conf:2: ExecStartPre= has unbalanced quoting" in result.stderr
