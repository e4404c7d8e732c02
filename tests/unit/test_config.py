"""Reading and checking the configuration (``config.load``)."""

from __future__ import annotations

import subprocess

import pytest

from builder import config
from builder.errors import ConfigError


def test_defaults_fill_every_optional_key(project):
    spec = config.load(project)
    assert spec.name == "demo-svc" and spec.version == "1.0.0"
    assert spec.install == {
        "units": "/usr/lib/systemd/system",
        "scripts": "/usr/lib/demo-svc",
        "configs": "/etc/demo-svc",
    }
    assert spec.folders["units"] == project / "units"
    assert spec.architecture == "all" and spec.keep_versions == 5 and spec.startup is None


def test_version_order_cli_then_tool_then_project_then_git(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "2.0rc1"\n'
        '[tool.debship]\nname = "x-y"\nmaintainer = "A B <a@example.com>"\ndescription = "d"\nstartup = false\n'
    )
    assert config.load(tmp_path).version == "2.0~rc1"
    assert config.load(tmp_path, "3.1.4").version == "3.1.4"
    text = (tmp_path / "pyproject.toml").read_text().replace('version = "2.0rc1"\n', "")
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match="no version"):
        config.load(tmp_path)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e.com",
        "PATH": "/usr/bin:/bin",
    }
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"], ["tag", "v1.4.0"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, env=env)
    assert config.load(tmp_path).version == "1.4.0"


def test_pyproject_without_debship_table_is_not_a_config(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"no debship configuration"):
        config.load(tmp_path)


def test_unit_options_are_checked(project):
    with open(project / "debship.toml", "a") as f:
        f.write('[units."demo-svc.service"]\non-upgrade = "reload"\n')
    with pytest.raises(ConfigError, match="on-upgrade must be one of restart, stop, none"):
        config.load(project)
