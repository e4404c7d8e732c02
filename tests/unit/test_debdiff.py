"""`debship diff`: two packages built by the real builder, compared item by item.

Three builds of the MINIMAL project:
  v1    1.0.0 as it is;
  bump  1.1.0, nothing else changed: what a version bump changes by itself;
  v2    1.1.0 with exactly three changes: the conffile's port, the unit's
        Restart= line, and on-upgrade = "stop" for the unit (which adds a
        preinst and changes the postinst).
diff(v1, bump) must show only the bump's effects, diff(bump, v2) only the three
changes, and diff(v1, v2) both: nothing more, nothing less.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.debdiff import Change, Directive, UnitChange, compare
from builder.diffview import render
from tests.harness.helpers import cli_runner, require_tool

CONF = "/etc/demo-svc/demo.conf"
UNIT = "/usr/lib/systemd/system/demo-svc.service"
MANIFEST = "/usr/share/debship/demo-svc.json"
CHANGELOG = "/usr/share/doc/demo-svc/changelog.gz"
JSON_LISTS = ("control", "added", "removed", "changed", "conffiles_changed", "units_changed", "scripts_changed")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


@pytest.fixture
def builds(project: Path, tmp_path: Path) -> dict:
    """{'v1', 'bump', 'v2'} -> path of the .deb; v1 and v2 are in <project>/dist."""
    v1 = build_deb(project).path
    _edit(project / "debship.toml", 'version = "1.0.0"', 'version = "1.1.0"')
    bump = build_deb(project, tmp_path / "bump").path
    _edit(project / "configs/demo.conf", "port = 8080", "port = 9090")  # same size: Installed-Size stays
    _edit(project / "units/demo-svc.service", "Restart=on-failure", "Restart=always")
    with open(project / "debship.toml", "a") as f:
        f.write('\n[units."demo-svc.service"]\non-upgrade = "stop"\n')
    v2 = build_deb(project).path
    return {"v1": v1, "bump": bump, "v2": v2}


def test_a_version_bump_alone_changes_version_changelog_and_version_strings(builds):
    d = compare(builds["v1"], builds["bump"])
    assert d.control == (Change("Version", "1.0.0", "1.1.0"),)
    assert d.added == d.removed == () and d.conffiles_changed == () and d.units == () and d.manifest == ()
    # The changelog's entry names the version; the manifest holds it (and only that differs there).
    assert [f.path for f in d.changed] == [MANIFEST, CHANGELOG]
    assert {c.name for f in d.changed for c in f.changes} <= {"content", "size"}
    assert d.changed[0].version_only
    # Every maintainer script names its version in a comment and the deploy log line; nothing else differs.
    assert [s.name for s in d.scripts] == ["preinst", "postinst", "prerm", "postrm"]
    assert all(s.status == "changed" and s.version_only for s in d.scripts)


def test_the_three_changes_are_reported_and_nothing_else(builds):
    d = compare(builds["bump"], builds["v2"])  # same version: no bump effects at all
    assert d.control == () and d.added == () and d.removed == () and d.manifest == ()
    assert [f.path for f in d.changed] == [CONF, UNIT, MANIFEST]  # the manifest: on_upgrade
    assert d.conffiles_changed == (CONF,)
    conf = d.changed[0]
    assert [c.name for c in conf.changes] == ["content"]
    assert "\n-port = 8080\n+port = 9090" in conf.diff
    assert d.units == (
        UnitChange(
            "demo-svc.service",
            "changed",
            directives=(Directive("Service", "Restart", ("on-failure",), ("always",)),),
            options=(Change("on-upgrade", "restart", "stop"),),
        ),
    )
    assert [(s.name, s.status, s.version_only) for s in d.scripts] == [
        ("preinst", "changed", False),
        ("postinst", "changed", False),
    ]
    preinst, postinst = d.scripts
    assert "+\t\tdeb-systemd-invoke stop 'demo-svc.service' >/dev/null || true" in preinst.diff.splitlines()
    changed = [line for line in postinst.diff.splitlines()[2:] if line[:1] in "+-"]
    assert "-\t\tinvoke restart 'demo-svc.service'" in changed
    assert "+\tinvoke start 'demo-svc.service'" in changed


def test_old_to_new_reports_both_and_the_cli_prints_them(builds):
    d = compare(builds["v1"], builds["v2"])
    data = d.as_dict()
    assert data["control"] == ["Version"]
    assert data["changed"] == [CONF, UNIT, MANIFEST, CHANGELOG]
    assert data["conffiles_changed"] == [CONF] and data["units_changed"] == ["demo-svc.service"]
    assert data["scripts_changed"] == ["preinst", "postinst", "prerm", "postrm"]
    assert data["added"] == data["removed"] == [] and data["identical"] is False
    lines = render(d)
    assert lines[0] == "demo-svc 1.0.0 -> 1.1.0"
    for expected in (
        "  Version: 1.0.0 -> 1.1.0",
        f"  ~ {CONF}  content  [conffile]",
        "      [Service] Restart=on-failure -> always",
        "      on-upgrade: restart -> stop",
        "  ~ preinst changed",
        "  ~ prerm changed (the version number only)",
    ):
        assert expected in lines
    assert lines.index("units (1):") < lines.index("maintainer scripts (4):")


def test_names_and_versions_are_found_in_dist_and_json_is_one_object(builds, project):
    r = cli_runner().invoke(main, ["diff", "demo-svc=1.0.0", "demo-svc=1.1.0", "--project", str(project), "--json"])
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1
    data = json.loads(r.stdout)
    assert set(JSON_LISTS) <= set(data)
    assert Path(data["old"]["path"]) == builds["v1"] and Path(data["new"]["path"]) == builds["v2"]
    assert data["details"]["units"]["demo-svc.service"]["directives"] == [
        {"section": "Service", "key": "Restart", "old": ["on-failure"], "new": ["always"]}
    ]


def test_a_version_with_an_epoch_is_found_by_its_fields_not_its_file_name(project):
    built = build_deb(project, version="1:2.0")
    assert built.path.name == "demo-svc_2.0_all.deb"
    build_deb(project)
    r = cli_runner().invoke(main, ["diff", "demo-svc=1.0.0", "demo-svc=1:2.0", "--project", str(project)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == "demo-svc 1.0.0 -> 1:2.0"
    r = cli_runner().invoke(main, ["diff", "demo-svc=2.0", "demo-svc=1.0.0", "--project", str(project)])
    assert r.exit_code == 2
    assert r.stderr == (
        f"diff: error: demo-svc=2.0: not in {project / 'dist'} (found demo-svc 1.0.0, 1:2.0); "
        "build that version or pass the path of a .deb\n"
    )


def test_identical_builds_give_an_empty_diff_and_exit_0(project, tmp_path):
    a = build_deb(project, tmp_path / "a").path
    b = build_deb(project, tmp_path / "b").path  # same version, same SOURCE_DATE_EPOCH
    assert a.read_bytes() == b.read_bytes()
    r = cli_runner().invoke(main, ["diff", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert all(data[k] == [] for k in JSON_LISTS) and data["identical"] is True
    r = cli_runner().invoke(main, ["diff", str(a), str(b)])
    assert r.exit_code == 0 and r.stdout.splitlines()[-1] == "no differences (the files are byte-identical)"


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_another_compression_is_not_a_difference(compression, project, tmp_path):
    if compression == "zstd":
        require_tool("unzstd")  # python-debian decompresses .zst with it
    a = build_deb(project, tmp_path / "a").path
    b = build_deb(project, tmp_path / "b", compression=compression).path
    assert a.read_bytes() != b.read_bytes()
    d = compare(a, b)
    assert d.empty
    assert render(d)[-1] == (
        "no differences (they differ only in what is not compared: mtimes, compression, member order)"
    )


def test_an_added_unit_is_reported_with_its_options(project, tmp_path):
    old = build_deb(project, tmp_path / "a").path
    (project / "units/extra.service").write_text(
        "[Unit]\nDescription=x\n\n[Service]\nExecStart=/usr/lib/demo-svc/serve.py\n"
    )
    d = compare(old, build_deb(project, tmp_path / "b").path)
    assert d.added == ("/usr/lib/systemd/system/extra.service",)
    assert d.units == (
        UnitChange(
            "extra.service",
            "added",
            options=(Change("enable", None, False), Change("start", None, True), Change("on-upgrade", None, "restart")),
        ),
    )
    assert "  + extra.service added  enable=no start=yes on-upgrade=restart" in render(d)


@pytest.mark.parametrize("case", ["missing", "folder", "not-a-deb", "truncated", "no-dist", "unknown-name"])
def test_errors_are_one_line_with_their_exit_code(case, project, tmp_path):
    good = build_deb(project, tmp_path / "out").path
    bad = tmp_path / "bad.deb"
    args, code, message = {
        "missing": (
            [str(tmp_path / "nothere.deb")],
            2,
            f"{tmp_path / 'nothere.deb'}: no such file; pass the path of a .deb, or NAME=VERSION to take it from dist",
        ),
        "folder": ([str(tmp_path)], 2, f"{tmp_path}: is a folder; pass a .deb file or NAME=VERSION"),
        "not-a-deb": (
            [str(bad)],
            7,
            f"{bad}: not a readable Debian package (Unable to find global header); "
            "pass a .deb file (as debship build or dpkg-deb write them)",
        ),
        "truncated": ([str(bad)], 7, f"{bad}: not a readable Debian package ("),
        "no-dist": (
            ["demo-svc=1.0.0", "--project", str(tmp_path)],
            2,
            f"demo-svc=1.0.0: no {tmp_path / 'dist'} folder to look in; "
            "build there with `debship build` or pass the path of a .deb",
        ),
        "unknown-name": (["other=1.0", "--project", str(tmp_path / "out" / "..")], 2, "other=1.0: not in "),
    }[case]
    bad.write_bytes(good.read_bytes()[:1500] if case == "truncated" else b"hello\n")
    if case == "unknown-name":
        (tmp_path / "dist").mkdir()
        (tmp_path / "dist" / good.name).write_bytes(good.read_bytes())
        (tmp_path / "dist" / "junk.deb").write_bytes(b"not a package")  # skipped, not fatal
        message += f"{tmp_path / 'out' / '..' / 'dist'} (no other package there; found demo-svc); "
    r = cli_runner().invoke(main, ["diff", *args, str(good)])
    assert r.exit_code == code, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("diff: error: " + message)


def test_a_package_from_dpkg_deb_symlinks_modes_folders_and_units_it_cannot_parse(tmp_path):
    """Not our writer: symlink targets, modes, folders, repeated directives, an unparsable unit."""
    require_tool("dpkg-deb")
    debs = []
    for v in (1, 2):
        root = tmp_path / f"foo{v}"
        for rel, text in {
            "DEBIAN/control": f"Package: foo\nVersion: 1:{v}.0\nArchitecture: all\n"
            "Maintainer: X <x@example.com>\nDescription: foo\n long text\n",
            "usr/bin/foo": "#!/bin/sh\n",
            "lib/systemd/system/foo.service": "[Service]\nExecStart=/usr/bin/foo\n"
            + ("ExecStartPre=/bin/a\nExecStartPre=/bin/b\n" * (v - 1)),
            "lib/systemd/system/odd.service": "[Unit]\n" * (v - 1) + "not a directive\n",
        }.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        (root / "usr/bin/foo").chmod(0o644 if v == 1 else 0o755)
        (root / "usr/bin/bar").symlink_to("foo" if v == 1 else "/usr/bin/foo")
        if v == 2:
            (root / "usr/share/foo").mkdir(parents=True)
        debs.append(tmp_path / f"foo{v}.deb")
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-b", str(root), str(debs[-1])], check=True, capture_output=True
        )
    d = compare(*debs)
    assert d.control == (Change("Version", "1:1.0", "1:2.0"),)
    assert d.added == ("/usr/share/", "/usr/share/foo/")
    changes = {f.path: {c.name: (c.old, c.new) for c in f.changes if c.name != "content"} for f in d.changed}
    assert changes["/usr/bin/bar"] == {"target": ("foo", "/usr/bin/foo")}
    assert changes["/usr/bin/foo"] == {"mode": ("0644", "0755")}
    foo, odd = d.units
    assert foo.directives == (Directive("Service", "ExecStartPre", (), ("/bin/a", "/bin/b")),)
    assert odd.directives == () and "+[Unit]" in odd.diff.splitlines()
    assert "      [Service] +ExecStartPre=/bin/b" in render(d)


def test_depends_are_shown_as_relations_added_and_removed(project, tmp_path):
    old = build_deb(project, tmp_path / "a").path
    _edit(project / "debship.toml", 'depends = ["python3"]', 'depends = ["python3", "curl (>= 7.88)"]')
    d = compare(old, build_deb(project, tmp_path / "b").path)
    assert d.control == (Change("Depends", "python3", "python3, curl (>= 7.88)"),)
    assert "  Depends: +curl (>= 7.88)" in render(d)


def _ar_members(deb: Path) -> list:
    """[(name, bytes)] of an ar archive, in order."""
    data, pos, out = deb.read_bytes(), 8, []
    while pos < len(data):
        name, size = data[pos : pos + 16].decode().strip().rstrip("/"), int(data[pos + 48 : pos + 58])
        out.append((name, data[pos + 60 : pos + 60 + size]))
        pos += 60 + size + size % 2
    return out


def _ar(members: list, out: Path) -> Path:
    blob = bytearray(b"!<arch>\n")
    for name, body in members:
        blob += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode() + body
        blob += b"\n" if len(body) % 2 else b""
    out.write_bytes(bytes(blob))
    return out


def test_a_data_archive_of_several_xz_streams_with_padding_reads_as_one(builds, tmp_path):
    """xz allows concatenated streams and zero padding between them (python-debian reads them);
    debship's own streaming reader must see the whole tar, not stop at the first stream."""
    import lzma

    v1, v2 = builds["v1"], builds["v2"]
    members = _ar_members(v2)
    tar = lzma.decompress(dict(members)["data.tar.xz"])
    half = len(tar) // 2
    split = lzma.compress(tar[:half]) + b"\0" * 8 + lzma.compress(tar[half:])
    two = _ar([(n, split if n == "data.tar.xz" else b) for n, b in members], tmp_path / "two-streams.deb")
    # Bytes after the last stream that are no stream: the end, as for Python's lzma.open.  The tar
    # has no end-of-archive blocks here, so its reader asks for more and meets them.
    cut = tar.rstrip(b"\0")
    junk = lzma.compress(cut + b"\0" * (-len(cut) % 512)) + b"\xff" * 16
    tail = _ar([(n, junk if n == "data.tar.xz" else b) for n, b in members], tmp_path / "trailing.deb")
    expected = compare(v1, v2)
    for deb, workers in ((two, 1), (two, 2), (tail, 2)):
        got = compare(v1, deb, workers=workers)
        assert (got.added, got.removed, got.changed, got.units, got.scripts) == (
            expected.added,
            expected.removed,
            expected.changed,
            expected.units,
            expected.scripts,
        )


def test_an_uncompressed_data_archive_is_read_the_same(builds, tmp_path):
    import lzma

    v1, v2 = builds["v1"], builds["v2"]
    members = _ar_members(v2)
    plain = [("data.tar", lzma.decompress(b)) if n == "data.tar.xz" else (n, b) for n, b in members]
    got, expected = compare(v1, _ar(plain, tmp_path / "plain.deb")), compare(v1, v2)
    assert (got.added, got.removed, got.changed) == (expected.added, expected.removed, expected.changed)


@pytest.mark.parametrize("where", ["data", "ar-header"])
def test_a_package_cut_short_in_its_data_archive_is_a_one_line_error(builds, tmp_path, where):
    good = builds["v2"]
    data = good.read_bytes()
    (last, body) = _ar_members(good)[-1]
    assert last == "data.tar.xz"
    start = data.index(b"data.tar.xz")
    cut = start + 60 + len(body) // 2 if where == "data" else start + 30  # inside the xz stream / the header
    bad = tmp_path / "cut.deb"
    bad.write_bytes(data[:cut])
    r = cli_runner().invoke(main, ["diff", str(builds["v1"]), str(bad)])
    assert r.exit_code == 7, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"diff: error: {bad}: not a readable Debian package (")


def test_the_package_digest_is_the_sha256_of_the_file(builds):
    import hashlib

    old = builds["v1"]
    assert compare(old, old).old.sha256 == hashlib.sha256(Path(old).read_bytes()).hexdigest()
