"""builder.cache: compiled templates and systemd-analyze verdicts are reused, never change
what is built, and are ignored when stale, corrupt, unwritable or turned off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder import build, cache, units
from builder.errors import PlanError
from tests.harness.helpers import require_tool
from tests.harness.project import copy_sample


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("DEBSHIP_CACHE", raising=False)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return home / "debship"


def entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_cached_build_is_byte_identical_to_an_uncached_one(tmp_path, cache_home, monkeypatch):
    project = copy_sample(tmp_path / "p")
    cold = build.build_deb(project, tmp_path / "cold")
    assert entries(cache_home / "jinja2")  # the templates were compiled into the cache
    warm = build.build_deb(project, tmp_path / "warm")
    monkeypatch.setenv("DEBSHIP_CACHE", "off")
    off = build.build_deb(project, tmp_path / "off")
    assert cold.sha256 == warm.sha256 == off.sha256


def test_an_edited_template_is_compiled_again(tmp_path, cache_home):
    project = copy_sample(tmp_path / "p")
    build.build_deb(project, tmp_path / "a")
    copyright_j2 = project / "debian" / "copyright.j2"
    copyright_j2.write_text(copyright_j2.read_text() + "Edited after it was cached.\n")
    built = build.build_deb(project, tmp_path / "b")
    from debian.debfile import DebFile

    text = DebFile(str(built.path)).data.get_content("usr/share/doc/fleet-agent/copyright").decode()
    assert text.endswith("Edited after it was cached.\n")


def test_corrupt_cache_entries_are_compiled_again(tmp_path, cache_home):
    project = copy_sample(tmp_path / "p")
    first = build.build_deb(project, tmp_path / "a")
    for entry in [
        *entries(cache_home / "jinja2"),
        *entries(cache_home / "rendered"),
        *entries(cache_home / "systemd-verify"),
    ]:
        entry.write_bytes(entry.read_bytes()[:20])  # truncated, as by a crash mid-write
    assert build.build_deb(project, tmp_path / "b").sha256 == first.sha256


def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert cache.directory("jinja2") is None
    built = build.build_deb(copy_sample(tmp_path / "p"), tmp_path / "out")
    assert built.path.is_file()


def test_off_writes_nothing(tmp_path, cache_home, monkeypatch):
    monkeypatch.setenv("DEBSHIP_CACHE", "off")
    build.build_deb(copy_sample(tmp_path / "p"), tmp_path / "out")
    assert not cache_home.exists()


def test_keys_differ_for_different_parts():
    assert cache.key("ab", "c") != cache.key("a", "bc")
    assert cache.key("a") == cache.key(b"a")


GOOD = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\nRestart=on-failure\n"


def test_verdict_is_cached_and_an_edited_unit_is_verified_again(tmp_path, cache_home):
    require_tool("systemd-analyze")
    unit = tmp_path / "demo.service"
    unit.write_text(GOOD)
    units.systemd_verify([unit], set())
    cached = entries(cache_home / "systemd-verify")
    assert len(cached) == 1
    units.systemd_verify([unit], set())  # same bytes: the same entry, no new one
    assert entries(cache_home / "systemd-verify") == cached
    unit.write_text(GOOD.replace("on-failure", "always\nType=oneshot"))  # systemd refuses this unit
    with pytest.raises(PlanError, match="Restart= set to either always"):
        units.systemd_verify([unit], set())
    assert len(entries(cache_home / "systemd-verify")) == 2
    # the cached verdict says so too, naming the bundle file it is given now, never a temporary copy
    moved = tmp_path / "elsewhere" / "demo.service"
    moved.parent.mkdir()
    moved.write_bytes(unit.read_bytes())
    with pytest.raises(PlanError) as refused:
        units.systemd_verify([moved], set())
    assert str(refused.value).startswith(f"{moved}: systemd-analyze verify refuses the unit")
    assert "debship-verify-" not in str(refused.value)
    assert len(entries(cache_home / "systemd-verify")) == 2


def test_cache_folder_is_private(cache_home):
    folder = cache.directory("jinja2")
    assert folder is not None and os.stat(folder).st_mode & 0o077 == 0


def test_a_rebuild_at_the_same_version_renders_from_the_cache_without_jinja2(tmp_path, cache_home):
    import subprocess
    import sys

    project = copy_sample(tmp_path / "p")
    first = build.build_deb(project, tmp_path / "a")
    assert entries(cache_home / "rendered")
    script = (
        "import sys; from pathlib import Path; from builder import build; "
        f"b = build.build_deb(Path({str(project)!r}), Path({str(tmp_path / 'b')!r})); "
        "print(b.sha256, 'jinja2' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.split() == [first.sha256, "False"]


def test_a_new_version_or_an_edited_template_is_rendered_again(tmp_path, cache_home):
    project = copy_sample(tmp_path / "p")
    build.build_deb(project, tmp_path / "a", version="1.0.0")
    again = build.build_deb(project, tmp_path / "b", version="1.0.1")
    from debian.debfile import DebFile

    assert DebFile(str(again.path)).debcontrol()["Version"] == "1.0.1"
    postinst = project / "debian" / "postinst.j2"  # the sample's own copy of debship's templates
    postinst.write_text(postinst.read_text().replace("set -e\n", "set -e\n# edited after it was cached\n", 1))
    edited = build.build_deb(project, tmp_path / "c", version="1.0.1")
    assert "# edited after it was cached" in DebFile(str(edited.path)).control.get_content("postinst").decode()
