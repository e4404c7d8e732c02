"""`debship init` on several project shapes: what it writes, what it refuses, and that the
result builds with `build-deb` at once and passes lintian (real build, real lintian)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder.cli import build_deb, main
from tests.harness.helpers import cli_runner, require_tool
from tests.harness.project import copy_sample, write_project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAINTAINER = ["--maintainer", "Ops Team <ops@example.com>"]

DOCKER_SERVICE = {
    "units/web.service": """
        [Unit]
        Description=web container
        After=docker.service
        Requires=docker.service

        [Service]
        ExecStartPre=-/usr/bin/docker rm -f web
        ExecStart=/usr/bin/docker run --rm --name web --env-file /etc/shop-web/web.env -p 8080:80 nginx:1.27
        ExecStop=/usr/bin/docker stop web
        Restart=on-failure

        [Install]
        WantedBy=multi-user.target
    """,
    "units/cleanup.service": """
        [Unit]
        Description=prune old images

        [Service]
        Type=oneshot
        ExecStart=/usr/lib/shop-web/cleanup.sh
    """,
    "units/cleanup.timer": """
        [Unit]
        Description=prune old images daily

        [Timer]
        OnCalendar=daily
        Persistent=true

        [Install]
        WantedBy=timers.target
    """,
    "scripts/cleanup.sh": """
        #!/bin/sh
        set -eu
        exec docker image prune -f
    """,
    "configs/web.env": """
        # settings for the web container
        WORKERS=4
    """,
}

SCRIPTS_ONLY = {
    "scripts/report.py": """
        #!/usr/bin/env python3
        print("report")
    """,
    "scripts/lib/helpers.py": """
        def helper():
            return 1
    """,
}

UNITS_ONLY = {
    "units/tmp-clean.service": """
        [Unit]
        Description=clean /var/tmp/app

        [Service]
        Type=oneshot
        ExecStart=/usr/bin/find /var/tmp/app -mtime +7 -delete
    """,
    "units/tmp-clean.timer": """
        [Unit]
        Description=clean /var/tmp/app weekly

        [Timer]
        OnCalendar=weekly

        [Install]
        WantedBy=timers.target
    """,
}


def run(*args, ok=True):
    result = cli_runner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


def build_and_lint(project, out):
    result = cli_runner().invoke(build_deb, ["--project", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    deb = result.stdout.strip().splitlines()[-1]
    require_tool("lintian")
    proc = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--display-info", deb], capture_output=True, text=True
    )
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert proc.returncode == 0 and not tags, proc.stdout + proc.stderr
    return deb


def dpkg_deb(*args) -> str:
    require_tool("dpkg-deb")
    return subprocess.run(["dpkg-deb", *map(str, args)], check=True, capture_output=True, text=True).stdout


def test_a_docker_service_with_a_timer_and_a_config(tmp_path):
    project = write_project(tmp_path / "shop_web", DOCKER_SERVICE)
    (project / "scripts" / "cleanup.sh").chmod(0o755)
    result = run("init", str(project), *MAINTAINER)
    assert "wrote" in result.stdout and "cleanup.service: started by its timer" in result.stdout
    config = tomllib.loads((project / "debship.toml").read_text())
    assert config["name"] == "shop-web"
    assert config["depends"] == ["docker.io | docker-ce"]
    assert config["units"] == {"cleanup.service": {"start": False}}
    assert (project / ".github" / "workflows" / "debship.yml").is_file()
    deb = build_and_lint(project, tmp_path / "out")
    assert dpkg_deb("--field", deb, "Depends") == "docker.io | docker-ce\n"
    listing = dpkg_deb("--contents", deb)
    for path in (
        "./usr/lib/systemd/system/web.service",
        "./usr/lib/systemd/system/cleanup.timer",
        "./usr/lib/shop-web/cleanup.sh",
        "./etc/shop-web/web.env",
    ):
        assert path in listing
    postinst = subprocess.run(["dpkg-deb", "--ctrl-tarfile", deb], check=True, capture_output=True).stdout
    assert postinst  # the control archive is there; what the scripts do is golden-tested elsewhere


def test_scripts_only(tmp_path):
    project = write_project(tmp_path / "reports", SCRIPTS_ONLY)
    result = run("init", str(project), *MAINTAINER, "--ci", "none")
    assert "no units/, configs/ here" in result.stdout
    config = tomllib.loads((project / "debship.toml").read_text())
    assert config["depends"] == ["python3"]  # from the #!/usr/bin/env python3 line
    assert not (project / ".github").exists()
    assert "scripts/lib/helpers.py is executable but has no #! line" in result.stdout
    (project / "scripts" / "lib" / "helpers.py").chmod(0o644)
    deb = build_and_lint(project, tmp_path / "out")
    assert "./usr/lib/reports/lib/helpers.py" in dpkg_deb("--contents", deb)


def test_units_only(tmp_path):
    project = write_project(tmp_path / "tmp-clean", UNITS_ONLY)
    run("init", str(project), *MAINTAINER, "--ci", "gitlab")
    config = tomllib.loads((project / "debship.toml").read_text())
    assert "depends" not in config  # find is in findutils, Essential
    assert config["units"] == {"tmp-clean.service": {"start": False}}
    assert "debship:" in (project / ".gitlab-ci.yml").read_text()
    build_and_lint(project, tmp_path / "out")


def test_the_sample_appends_to_pyproject_and_leaves_the_rest(tmp_path):
    project = copy_sample(tmp_path / "fleet-agent")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    before = text[: text.index("# The sample bundle")]  # everything above the sample's table
    pyproject.write_text(before)
    result = run("init", str(project), *MAINTAINER, "--startup", ok=False)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"init: error: {project / 'scripts' / 'startup.py'}: already there; "
        "init never overwrites a file (drop --startup: the existing one is used)"
    )
    assert pyproject.read_text() == before and not (project / ".github").exists()
    result = run("init", str(project), *MAINTAINER)
    assert "appended [tool.debship] to" in result.stdout
    after = pyproject.read_text()
    assert after.startswith(before)
    data = tomllib.loads(after)
    table = data["tool"]["debship"]
    assert table["name"] == "debship"  # [project].name wins over the folder's
    assert "version" not in table  # [project].version is used
    assert table["depends"] == ["python3"]
    build_and_lint(project, tmp_path / "out")
    again = run("init", str(project), *MAINTAINER, ok=False)
    assert again.exit_code == 2 and "already has [tool.debship]" in again.stderr


def test_startup_is_written_and_runs_from_postinst(tmp_path):
    project = write_project(tmp_path / "prep", {"configs/prep.conf": "# nothing yet\n"})
    run("init", str(project), *MAINTAINER, "--startup", "--ci", "none")
    startup = project / "scripts" / "startup.py"
    assert startup.stat().st_mode & 0o111
    deb = build_and_lint(project, tmp_path / "out")
    control = subprocess.run(["dpkg-deb", "-I", deb, "postinst"], check=True, capture_output=True, text=True)
    assert "/usr/lib/prep/startup.py" in control.stdout
    assert "python3" in dpkg_deb("--field", deb, "Depends")


def test_maintainer_and_homepage_come_from_git(tmp_path):
    require_tool("git")
    project = write_project(tmp_path / "gitproj", {"scripts/report.py": SCRIPTS_ONLY["scripts/report.py"]})
    for args in (
        ["init", "-q"],
        ["config", "user.name", "Git Person"],
        ["config", "user.email", "gp@example.org"],
        ["remote", "add", "origin", "git@github.com:acme/gitproj.git"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True)
    run("init", str(project), "--ci", "none")
    config = tomllib.loads((project / "debship.toml").read_text())
    assert config["maintainer"] == "Git Person <gp@example.org>"
    assert config["homepage"] == "https://github.com/acme/gitproj"


@pytest.mark.parametrize("existing", [".github/workflows/debship.yml", "debship.toml"])
def test_never_overwrites_a_file_and_writes_nothing_then(tmp_path, existing):
    project = write_project(tmp_path / "svc", {**SCRIPTS_ONLY, existing: "mine\n"})
    result = run("init", str(project), *MAINTAINER, ok=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(project / existing) in lines[0] and "already there" in lines[0]
    assert (project / existing).read_text() == "mine\n"
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == sorted(
        [*SCRIPTS_ONLY, existing]
    )


def test_an_empty_folder_has_nothing_to_package(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("init", str(tmp_path / "empty"), *MAINTAINER, ok=False)
    assert result.exit_code == 2
    assert "nothing to package" in result.stderr and "--startup" in result.stderr
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_folder_name_that_is_no_package_name_asks_for_name(tmp_path):
    project = write_project(tmp_path / "X", SCRIPTS_ONLY)
    result = run("init", str(project), *MAINTAINER, ok=False)
    assert result.exit_code == 2 and "pass --name" in result.stderr
    run("init", str(project), *MAINTAINER, "--name", "x-tool", "--ci", "none")
    assert tomllib.loads((project / "debship.toml").read_text())["name"] == "x-tool"
