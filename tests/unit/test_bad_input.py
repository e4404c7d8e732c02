"""Every foreseen bad input: one line on stderr naming the thing and the fix, a
non-zero exit, no traceback, and nothing new in the output folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import build_deb

from tests.helpers import cli_runner, require_tool


def run_build(project: Path, *args: str):
    out = project.parent / "out"
    out.mkdir(exist_ok=True)
    before = sorted(out.iterdir())
    runner = cli_runner()
    result = runner.invoke(build_deb, ["--project", str(project), "--out", str(out), *args])
    return result, before, sorted(out.iterdir())


def assert_refused(project: Path, *expect: str, args: tuple = (), code: int | None = None) -> str:
    result, before, after = run_build(project, *args)
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        f"unexpected exception: {result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("build-deb: error: ")
    assert "Traceback" not in result.stderr
    for text in expect:
        assert text in lines[0], lines[0]
    assert after == before, "the output folder changed"
    return lines[0]


def edit(project: Path, rel: str, old: str, new: str) -> None:
    path = project / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new))


def test_the_minimal_project_builds(project):
    result, before, after = run_build(project)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in after] == ["demo-svc_1.0.0_all.deb"]
    assert result.stdout.strip().splitlines()[-1].endswith("demo-svc_1.0.0_all.deb")


def test_an_absent_default_folder_is_none_of_that_kind(project):
    """A project with no units/ (or configs/, scripts/) simply has none: it builds without them."""
    shutil.rmtree(project / "units")
    shutil.rmtree(project / "configs")
    result, _, after = run_build(project)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in after] == ["demo-svc_1.0.0_all.deb"]


def test_a_named_folder_that_is_missing_is_refused(project):
    shutil.rmtree(project / "units")
    with open(project / "debship.toml", "a") as f:
        f.write('[folders]\nunits = "units"\n')
    assert_refused(project, "units folder is missing", "folders].units", code=3)


def test_no_bundle_folder_at_all_is_refused(project):
    for kind in ("units", "scripts", "configs"):
        shutil.rmtree(project / kind)
    assert_refused(project, "nothing to package", "units/, scripts/ or configs/", code=3)


def test_the_default_startup_is_optional_a_named_one_is_not(project):
    edit(project, "debship.toml", "startup = false\n", "")
    result, _, _ = run_build(project)                     # no scripts/startup.py: no startup step
    assert result.exit_code == 0, result.stderr
    edit(project, "debship.toml", 'name = "demo-svc"', 'name = "demo-svc"\nstartup = "startup.py"')
    assert_refused(project, "startup = 'startup.py'", "no such file", code=3)


def test_empty_bundle_folder(project):
    (project / "configs" / "demo.conf").unlink()
    assert_refused(project, "configs folder is empty", code=3)


def test_no_config_at_all(project):
    (project / "debship.toml").unlink()
    assert_refused(project, "no debship configuration", "[tool.debship]", code=2)


def test_malformed_toml(project):
    edit(project, "debship.toml", 'name = "demo-svc"', "name = demo-svc")
    assert_refused(project, "debship.toml", "not valid TOML", code=2)


def test_malformed_unit_line(project):
    edit(project, "units/demo-svc.service", "Restart=on-failure", "Restart on failure")
    assert_refused(project, "demo-svc.service:7", "expected 'Key=value'", code=3)


def test_unit_without_execstart(project):
    edit(project, "units/demo-svc.service", "ExecStart=", "X-Disabled-ExecStart=")
    assert_refused(project, "demo-svc.service", "no ExecStart=", code=3)


def test_unit_unknown_section(project):
    edit(project, "units/demo-svc.service", "[Install]", "[Instal]")
    assert_refused(project, "unknown section [Instal]", code=3)


def test_unit_value_systemd_rejects(project):
    require_tool("systemd-analyze")
    edit(project, "units/demo-svc.service", "Restart=on-failure", "Restart=sometimes")
    assert_refused(project, "demo-svc.service", "systemd-analyze verify", "sometimes", code=3)


def test_execstart_names_a_script_not_in_the_bundle(project):
    edit(project, "units/demo-svc.service", "serve.py", "server.py")
    assert_refused(project, "ExecStart= runs /usr/lib/demo-svc/server.py", "not in the bundle", code=3)


@pytest.mark.parametrize("name", ["Demo", "d", "demo_svc", "-demo", "demo svc"])
def test_invalid_package_name(project, name):
    edit(project, "debship.toml", 'name = "demo-svc"', f'name = "{name}"')
    assert_refused(project, f"package name '{name}' is invalid", code=2)


@pytest.mark.parametrize("version", ["x1.0", "1.0 beta", "1..0:", "1.0-", "a:1.0"])
def test_invalid_version(project, version):
    edit(project, "debship.toml", 'version = "1.0.0"', f'version = "{version}"')
    assert_refused(project, version, code=2)


def test_invalid_version_on_the_command_line(project):
    assert_refused(project, "_1.0", args=("--version", "_1.0"), code=2)


def test_symlink_pointing_outside_the_bundle(project, tmp_path):
    secret = tmp_path / "secret.conf"
    secret.write_text("password=hunter2\n")
    os.symlink(secret, project / "configs" / "leak.conf")
    assert_refused(project, "leak.conf", "points outside", code=3)


def test_symlinked_folder_is_refused(project, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", project / "configs" / "sub")
    assert_refused(project, "configs/sub", code=3)


def test_folder_escaping_the_project(project):
    with open(project / "debship.toml", "a") as f:
        f.write('[folders]\nconfigs = "../configs"\n')
    assert_refused(project, "folders.configs", "inside the project", code=2)


def test_install_path_with_dotdot(project):
    with open(project / "debship.toml", "a") as f:
        f.write('[install]\nconfigs = "/etc/../usr/demo"\n')
    assert_refused(project, "install.configs", code=2)


def test_two_files_with_the_same_destination(project):
    (project / "configs" / "serve.py").write_text("x = 1\n")
    with open(project / "debship.toml", "a") as f:
        f.write('[install]\nconfigs = "/usr/lib/{name}"\n')
    assert_refused(project, "both install to /usr/lib/demo-svc/serve.py", code=3)


def test_file_name_that_cannot_be_encoded(project):
    bad = os.path.join(os.fsencode(project / "configs"), b"bad\xff.conf")
    with open(bad, "wb") as f:
        f.write(b"x\n")
    assert_refused(project, "not valid UTF-8", code=3)


def test_file_name_with_a_newline(project):
    (project / "configs" / "two\nlines.conf").write_text("x\n")
    assert_refused(project, "whitespace or control characters", code=3)


@pytest.mark.parametrize("key", ["name", "maintainer", "description"])
def test_missing_required_key(project, key):
    path = project / "debship.toml"
    path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith(key)))
    assert_refused(project, f"required key '{key}'", code=2)


def test_unknown_key_is_an_error_with_a_suggestion(project):
    with open(project / "debship.toml", "a") as f:
        f.write('dependss = ["curl"]\n')
    assert_refused(project, "unknown key 'dependss'", "did you mean 'depends'", code=2)


def test_bad_maintainer(project):
    edit(project, "debship.toml", "Demo Team <demo@example.com>", "demo@example.com")
    assert_refused(project, "maintainer", "Full Name <user@example.com>", code=2)


def test_bad_depends(project):
    edit(project, "debship.toml", 'depends = ["python3"]', 'depends = ["python3 >= 3.9"]')
    assert_refused(project, "depends entry 'python3 >= 3.9'", code=2)


def test_startup_script_missing(project):
    edit(project, "debship.toml", "startup = false", 'startup = "boot.py"')
    assert_refused(project, "startup = 'boot.py'", "no such file", code=3)


def test_unit_options_for_a_unit_that_does_not_exist(project):
    with open(project / "debship.toml", "a") as f:
        f.write('[units."other.service"]\nstart = false\n')
    assert_refused(project, 'units."other.service"', "no such unit", code=3)


def test_enable_without_install_section(project):
    edit(project, "units/demo-svc.service", "[Install]\nWantedBy=multi-user.target\n", "")
    with open(project / "debship.toml", "a") as f:
        f.write('[units."demo-svc.service"]\nenable = true\n')
    assert_refused(project, "no [Install] section", code=3)


def test_bad_source_date_epoch(project, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert_refused(project, "SOURCE_DATE_EPOCH", code=2)


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
    proc = subprocess.run([unshare, "--user", str(build), "--project", str(project), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"build-deb: error: {secret}: cannot read the file (permission denied); fix its permissions"]
    assert list(out.iterdir()) == []
