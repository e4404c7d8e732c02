"""Rendering the control files: long descriptions, Installed-Size, field checks, templates, the manifest."""

from __future__ import annotations

import json
import subprocess

import pytest

from builder import config, control
from builder import plan as planning
from builder.errors import BuildError
from tests.harness.helpers import require_tool
from tests.harness.project import REPO


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
    (project / "debian" / "changelog.j2").write_text(
        "{{ name }} ({{ version }}) custom; urgency=low\n\n  * x\n\n -- {{ maintainer }}  {{ date }}\n"
    )
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
