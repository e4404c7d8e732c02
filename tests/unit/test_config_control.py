"""Config defaults and version resolution; control-file rendering helpers."""
from __future__ import annotations

import json
import subprocess

import pytest

from builder import config, control
from builder import plan as planning
from builder.errors import BuildError, ConfigError

from tests.conftest import REPO
from tests.helpers import require_tool


def test_defaults_fill_every_optional_key(project):
    spec = config.load(project)
    assert spec.name == "demo-svc" and spec.version == "1.0.0"
    assert spec.install == {"units": "/usr/lib/systemd/system", "scripts": "/usr/lib/demo-svc",
                            "configs": "/etc/demo-svc"}
    assert spec.folders["units"] == project / "units"
    assert spec.architecture == "all" and spec.keep_versions == 5 and spec.startup is None


def test_version_order_cli_then_tool_then_project_then_git(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "2.0rc1"\n'
        '[tool.debship]\nname = "x-y"\nmaintainer = "A B <a@example.com>"\ndescription = "d"\nstartup = false\n')
    assert config.load(tmp_path).version == "2.0~rc1"
    assert config.load(tmp_path, "3.1.4").version == "3.1.4"
    text = (tmp_path / "pyproject.toml").read_text().replace('version = "2.0rc1"\n', "")
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match="no version"):
        config.load(tmp_path)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e.com", "PATH": "/usr/bin:/bin"}
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


def test_long_description_wraps_and_marks_paragraphs():
    lines = control._long_description("word " * 40 + "\n\nsecond paragraph")
    assert all(len(l) <= 72 for l in lines)
    assert "." in lines and lines[-1] == "second paragraph"


def test_long_description_keeps_a_word_longer_than_a_line_whole():
    url = "https://example.com/" + "x" * 80
    assert control._long_description(f"see {url} for more") == ["see", url, "for more"]


def test_installed_size_counts_files_rounded_up_and_folders():
    sizes = {"/usr/lib/a/x": 1, "/usr/lib/a/y": 1025, "/etc/a/z": 0}
    # files: 1 + 2 + 0; folders: /usr, /usr/lib, /usr/lib/a, /etc, /etc/a
    assert control.installed_size(sizes) == 3 + 5


@pytest.mark.parametrize("bad", ["Package: x\nVersion:\n", "Package: x\nbroken line\n", "Package: x\n\nVersion: 1\n"])
def test_check_control_refuses_malformed_fields(bad):
    with pytest.raises(BuildError, match="malformed line"):
        control.check_control(bad)


def test_project_templates_override_the_builtin_ones(project):
    (project / "debian").mkdir()
    (project / "debian" / "changelog.j2").write_text("{{ name }} ({{ version }}) custom; urgency=low\n\n"
                                                     "  * x\n\n -- {{ maintainer }}  {{ date }}\n")
    spec = config.load(project)
    files = control.render(spec, planning.build(spec), {}, {}, 0)
    import gzip
    text = gzip.decompress(files.docs["/usr/share/doc/demo-svc/changelog.gz"]).decode()
    assert "custom; urgency=low" in text
    assert control.template_dirs(project)[0] == project / "debian"


def test_the_changelog_is_gzipped_with_gzip_9ns_header_on_every_python(project):
    """Python 3.13 writes OS byte 255 in gzip headers where 3.11 wrote 3: the .deb would differ between them."""
    spec = config.load(project)
    data = control.render(spec, planning.build(spec), {}, {}, 0).docs["/usr/share/doc/demo-svc/changelog.gz"]
    import gzip
    text = gzip.decompress(data)
    reference = subprocess.run([require_tool("gzip"), "-9n"], input=text, capture_output=True, check=True).stdout
    assert data[:10] == reference[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"


def test_a_template_naming_an_unknown_value_fails_clearly(project):
    (project / "debian").mkdir()
    (project / "debian" / "copyright.j2").write_text("{{ no_such_value }}\n")
    spec = config.load(project)
    with pytest.raises(BuildError, match=r"copyright.j2(:1)?: template error: 'no_such_value' is undefined"):
        control.render(spec, planning.build(spec), {}, {}, 0)


def test_manifest_describes_units_and_health():
    spec = config.load(REPO)
    data = json.loads(control.manifest(spec, planning.build(spec))["/usr/share/debship/fleet-agent.json"])
    assert data["name"] == "fleet-agent" and data["health"] == spec.health
    assert {u["name"] for u in data["units"]} == {"fleet-agent.service", "fleet-agent-startup.service"}
    assert data["startup"] == "/usr/lib/fleet-agent/startup.py"
