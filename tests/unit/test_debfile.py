"""builder.debfile: the .deb we write, read back by other people's readers (Convention 9).

Readers: dpkg-deb (--info, --field, --contents, --fsys-tarfile, --ctrl-tarfile, -x, -e),
binutils ``ar`` and python-debian's ``DebFile``.  Our own parsing is only used for the
byte layout dpkg-deb itself does not report (ar headers, compressor headers).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from builder import debfile
from builder.debfile import COMPRESSIONS, Member, write
from builder.debinfo import BuiltDeb, deb_filename
from builder.errors import BuildError
from tests.harness.helpers import require_module, require_tool

MTIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC
CONTROL = b"Package: t\nVersion: 1.0\nArchitecture: all\nMaintainer: A <a@example.com>\nDescription: t\n t\n"
POSTINST = b"#!/bin/sh\nset -e\nexit 0\n"
CONF = b"# demo config\nlevel = 3\n"
FILES = {  # path: (mode, content)
    "usr/lib/demo/startup.py": (0o755, b"#!/usr/bin/python3\nprint('hello')\n"),
    "usr/lib/demo/lib/util.py": (0o644, b"X = 1\n"),
    "lib/systemd/system/demo.service": (0o644, b"[Service]\nExecStart=/usr/lib/demo/startup.py\n"),
    "usr/share/doc/demo/copyright": (0o644, b"MIT\n"),
}
CONF_PATH = "etc/demo/demo.conf"  # given as a source file, not in memory
DATA_ORDER = [
    "./",
    "./etc/",
    "./etc/demo/",
    "./etc/demo/demo.conf",
    "./lib/",
    "./lib/systemd/",
    "./lib/systemd/system/",
    "./lib/systemd/system/demo.service",
    "./usr/",
    "./usr/lib/",
    "./usr/lib/demo/",
    "./usr/lib/demo/lib/",
    "./usr/lib/demo/lib/util.py",
    "./usr/lib/demo/startup.py",
    "./usr/share/",
    "./usr/share/doc/",
    "./usr/share/doc/demo/",
    "./usr/share/doc/demo/copyright",
]
CONTROL_ORDER = ["./", "./conffiles", "./control", "./md5sums", "./postinst"]
MAGIC = {"xz": b"\xfd7zXZ\x00", "gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}


# -- building ----------------------------------------------------------------


def payload(src_dir: Path, files: dict = FILES) -> tuple[list[Member], list[Member]]:
    """Control and data members for FILES plus one conffile read from disk."""
    src_dir.mkdir(parents=True, exist_ok=True)
    conf = src_dir / "demo.conf"
    conf.write_bytes(CONF)
    contents = {**{p: c for p, (_, c) in files.items()}, CONF_PATH: CONF}
    md5sums = "".join(f"{hashlib.md5(c).hexdigest()}  {p}\n" for p, c in sorted(contents.items()))
    control = [
        Member("control", 0o644, CONTROL),
        Member("md5sums", 0o644, md5sums.encode()),
        Member("conffiles", 0o644, f"/{CONF_PATH}\n".encode()),
        Member("postinst", 0o755, POSTINST),
    ]
    data = [Member(p, mode, data=c) for p, (mode, c) in files.items()]
    return control, data + [Member(CONF_PATH, 0o644, source=conf)]


def build(tmp_path: Path, compression: str = "xz", out: str = "out", **kw) -> BuiltDeb:
    control, data = payload(tmp_path / "src")
    kw.setdefault("mtime", MTIME)
    return write(control, data, tmp_path / out, name="t", version="1.0", compression=compression, **kw)


def run(*argv: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a reader (skipping if it is not installed); it must succeed."""
    require_tool(str(argv[0]))
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C", **(env or {})}
    return subprocess.run([str(a) for a in argv], capture_output=True, check=True, env=env)


def tar_of(stdout: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(stdout)) as tar:
        return tar.getmembers()


def ar_members(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(60-byte header, body) of each member, checking the padding on the way."""
    assert raw[:8] == b"!<arch>\n"
    pos, out = 8, []
    while pos < len(raw):
        header = raw[pos : pos + 60]
        size = int(header[48:58])
        out.append((header, raw[pos + 60 : pos + 60 + size]))
        pos += 60 + size
        if size % 2:
            assert raw[pos : pos + 1] == b"\n"
            pos += 1
    assert pos == len(raw)
    return out


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(params=COMPRESSIONS)
def compression(request) -> str:
    if request.param == "zstd":
        require_module("zstandard")
    return request.param


# -- the API -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, version, arch, expected",
    [
        ("t", "1.0", "all", "t_1.0_all.deb"),
        ("fleet-agent", "1:2.0~rc1-1", "amd64", "fleet-agent_2.0~rc1-1_amd64.deb"),
        ("x", "3.0+git1", "arm64", "x_3.0+git1_arm64.deb"),
    ],
)
def test_deb_filename_drops_the_epoch(name, version, arch, expected):
    assert deb_filename(name, version, arch) == expected


def test_built_deb_describes_the_file(tmp_path):
    built = build(tmp_path)
    raw = built.path.read_bytes()
    assert built.path == tmp_path / "out" / "t_1.0_all.deb"
    assert (built.name, built.version, built.architecture) == ("t", "1.0", "all")
    assert built.sha256 == hashlib.sha256(raw).hexdigest()
    assert built.size == len(raw) == built.path.stat().st_size
    assert json.loads(json.dumps(built.as_dict())) == {
        "path": str(built.path),
        "name": "t",
        "version": "1.0",
        "architecture": "all",
        "sha256": built.sha256,
        "size": built.size,
    }
    assert files_in(tmp_path / "out") == ["t_1.0_all.deb"]  # no .part left over
    assert built.path.stat().st_mode & 0o777 == 0o644


def test_out_dir_is_created(tmp_path):
    built = build(tmp_path, out="dist/nested")
    assert built.path.parent == tmp_path / "dist" / "nested"


# -- the ar container --------------------------------------------------------


def test_ar_layout_is_dpkg_debs(tmp_path, compression):
    built = build(tmp_path, compression)
    members = ar_members(built.path.read_bytes())
    ext = {"xz": ".xz", "gzip": ".gz", "zstd": ".zst", "none": ""}[compression]
    names = [h[:16].rstrip().decode() for h, _ in members]
    assert names == ["debian-binary", f"control.tar{ext}", f"data.tar{ext}"]
    for header, body in members:
        assert header[16:58].split() == [str(MTIME).encode(), b"0", b"0", b"100644", str(len(body)).encode()]
        assert header[58:] == b"`\n"
    assert members[0][1] == b"2.0\n"
    for _, body in members[1:]:
        if compression == "none":
            assert body[257:263] == b"ustar "  # GNU tar magic
        else:
            assert body.startswith(MAGIC[compression])
    ar_listing = run("ar", "t", built.path).stdout.decode().split()
    assert ar_listing == names


def test_gzip_header_has_no_time_and_no_name(tmp_path):
    built = build(tmp_path, "gzip")
    for _, body in ar_members(built.path.read_bytes())[1:]:
        assert body[3] & 0x08 == 0  # FNAME flag unset
        assert body[4:8] == b"\0\0\0\0"  # MTIME 0


# -- other people's readers --------------------------------------------------


def test_dpkg_deb_info_and_fields(tmp_path, compression):
    built = build(tmp_path, compression)
    info = run("dpkg-deb", "--info", built.path)
    assert info.stderr == b""
    text = info.stdout.decode()
    listed = re.findall(r"^ +\d+ bytes, +\d+ lines +(\*)? +(\S+)", text, re.M)
    assert listed == [("", "conffiles"), ("", "control"), ("", "md5sums"), ("*", "postinst")]  # * = executable
    assert "Package: t\n" in text and "Description: t\n" in text
    fields = run("dpkg-deb", "--field", built.path, "Package", "Version", "Architecture", "Maintainer")
    assert fields.stdout.decode() == "Package: t\nVersion: 1.0\nArchitecture: all\nMaintainer: A <a@example.com>\n"


def test_dpkg_deb_contents(tmp_path, compression):
    built = build(tmp_path, compression)
    lines = run("dpkg-deb", "--contents", built.path).stdout.decode().splitlines()
    rows = [line.split(None, 5) for line in lines]
    assert [r[5] for r in rows] == DATA_ORDER
    assert {r[1] for r in rows} == {"root/root"}
    assert {(r[3], r[4]) for r in rows} == {("2023-11-14", "22:13")}
    perms = {r[5]: r[0] for r in rows}
    assert perms["./usr/lib/demo/"] == "drwxr-xr-x"
    assert perms["./usr/lib/demo/startup.py"] == "-rwxr-xr-x"
    assert perms["./etc/demo/demo.conf"] == "-rw-r--r--"


def test_dpkg_deb_tar_streams(tmp_path, compression):
    built = build(tmp_path, compression)
    data = tar_of(run("dpkg-deb", "--fsys-tarfile", built.path).stdout)
    ctrl = tar_of(run("dpkg-deb", "--ctrl-tarfile", built.path).stdout)
    assert [m.name for m in ctrl] == ["."] + [n.rstrip("/") for n in CONTROL_ORDER[1:]]
    assert [m.name for m in data] == ["."] + [n.rstrip("/") for n in DATA_ORDER[1:]]
    for m in data + ctrl:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "root", "root", MTIME)
        assert m.isdir() or m.isfile()
        assert m.pax_headers == {}
        assert not m.isdir() or m.mode == 0o755
    modes = {m.name: m.mode for m in data + ctrl}
    assert modes["./postinst"] == 0o755 and modes["./control"] == 0o644
    assert modes["./usr/lib/demo/startup.py"] == 0o755 and modes["./usr/lib/demo/lib/util.py"] == 0o644


def test_dpkg_deb_extracts_the_content(tmp_path, compression):
    built = build(tmp_path, compression)
    root, ctrl = tmp_path / "root", tmp_path / "DEBIAN"
    run("dpkg-deb", "-x", built.path, root)
    run("dpkg-deb", "-e", built.path, ctrl)
    for path, (mode, content) in FILES.items():
        assert (root / path).read_bytes() == content
        assert bool((root / path).stat().st_mode & 0o111) == bool(mode & 0o111)
    assert (root / CONF_PATH).read_bytes() == CONF
    assert (ctrl / "control").read_bytes() == CONTROL
    assert (ctrl / "postinst").read_bytes() == POSTINST
    assert (ctrl / "postinst").stat().st_mode & 0o111


def test_python_debian_reads_it(tmp_path, compression):
    debfile_mod = require_module("debian.debfile")
    if compression == "zstd":
        require_tool("unzstd")  # python-debian decompresses .zst with it
    built = build(tmp_path, compression)
    deb = debfile_mod.DebFile(str(built.path))
    try:
        fields = deb.debcontrol()
        assert (fields["Package"], fields["Version"], fields["Maintainer"]) == ("t", "1.0", "A <a@example.com>")
        assert deb.data.tgz().getnames() == ["."] + [n.rstrip("/") for n in DATA_ORDER[1:]]
        assert deb.data.get_content("usr/lib/demo/startup.py") == FILES["usr/lib/demo/startup.py"][1]
        assert deb.data.get_content(CONF_PATH) == CONF
        assert deb.control.get_content("postinst") == POSTINST
        md5sums = deb.md5sums(encoding="utf-8")
        assert md5sums[CONF_PATH] == hashlib.md5(CONF).hexdigest()
        assert len(md5sums) == len(FILES) + 1
    finally:
        deb.close()


def test_tar_streams_equal_dpkg_debs_own(tmp_path, compression):
    """dpkg-deb --build of the same tree (SOURCE_DATE_EPOCH, --root-owner-group) gives the same tars."""
    built = build(tmp_path, compression)
    tree = tmp_path / "tree"
    run("dpkg-deb", "-R", built.path, tree)  # our deb unpacked as a dpkg-deb build tree
    for d in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
        d.chmod(0o755)  # implied directories are 0755, whatever the umask
    ref = tmp_path / "ref.deb"
    dpkg_z = {"none": "none", "gzip": "gzip", "xz": "xz", "zstd": "zstd"}[compression]
    run("dpkg-deb", "--root-owner-group", f"-Z{dpkg_z}", "--build", tree, ref, env={"SOURCE_DATE_EPOCH": str(MTIME)})
    for what in ("--fsys-tarfile", "--ctrl-tarfile"):
        assert run("dpkg-deb", what, built.path).stdout == run("dpkg-deb", what, ref).stdout, what
    if compression == "none":  # no compressor in the way: the whole file is dpkg-deb's, byte for byte
        assert built.path.read_bytes() == ref.read_bytes()


def test_big_long_and_non_ascii_paths(tmp_path):
    """A multi-MB source streamed in chunks, a path past tar's 100 chars (GNU longname), UTF-8."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    long_path = "usr/share/demo/" + "/".join(["d" * 30] * 4) + "/file.txt"
    data = [
        Member("usr/share/demo/big.bin", 0o644, source=big),
        Member(long_path, 0o644, data=b"long\n"),
        Member("usr/share/demo/caf\u00e9.txt", 0o644, data=b"utf8\n"),
    ]
    built = write([Member("control", 0o644, CONTROL)], data, tmp_path / "out", name="t", version="1.0", mtime=MTIME)
    root = tmp_path / "root"
    run("dpkg-deb", "-x", built.path, root)
    assert (root / "usr/share/demo/big.bin").read_bytes() == big.read_bytes()
    assert (root / long_path).read_bytes() == b"long\n"
    assert (root / "usr/share/demo/caf\u00e9.txt").read_bytes() == b"utf8\n"


# -- reproducible ------------------------------------------------------------


def test_rebuild_is_byte_identical(tmp_path, compression):
    first = build(tmp_path, compression, out="a")
    second = build(tmp_path, compression, out="b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256


def test_member_order_does_not_matter(tmp_path):
    control, data = payload(tmp_path / "src")
    a = write(control, data, tmp_path / "a", name="t", version="1.0", mtime=MTIME)
    b = write(control[::-1], data[::-1], tmp_path / "b", name="t", version="1.0", mtime=MTIME)
    assert a.sha256 == b.sha256


def test_changes_change_the_hash(tmp_path):
    base = build(tmp_path, out="base")
    later = build(tmp_path, out="later", mtime=MTIME + 1)
    control, data = payload(tmp_path / "src2", {**FILES, "usr/share/doc/demo/copyright": (0o644, b"GPL\n")})
    edited = write(control, data, tmp_path / "edited", name="t", version="1.0", mtime=MTIME)
    assert len({base.sha256, later.sha256, edited.sha256}) == 3


def test_modes_are_reduced_to_permission_bits(tmp_path):
    data = [Member("usr/bin/x", 0o100755, data=b"x"), Member("usr/share/y", 0o100640, data=b"y")]
    built = write([Member("control", 0o644, CONTROL)], data, tmp_path / "out", name="t", version="1.0", mtime=MTIME)
    modes = {m.name: m.mode for m in tar_of(run("dpkg-deb", "--fsys-tarfile", built.path).stdout)}
    assert modes["./usr/bin/x"] == 0o755 and modes["./usr/share/y"] == 0o640


@pytest.mark.parametrize("given, written", [(-5, 0), (8**11 + 10, 8**11 - 1)])
def test_mtime_is_clamped(tmp_path, given, written):
    built = build(tmp_path, mtime=given)
    assert {m.mtime for m in tar_of(run("dpkg-deb", "--fsys-tarfile", built.path).stdout)} == {written}
    assert {int(h[16:28]) for h, _ in ar_members(built.path.read_bytes())} == {written}


# -- refusals and failures leave nothing behind ------------------------------

C = [Member("control", 0o644, CONTROL)]
D = [Member("usr/lib/x", 0o644, data=b"x")]


@pytest.mark.parametrize(
    "control, data, kw, says",
    [
        (C, D + [Member("usr/lib/x", 0o755, data=b"y")], {}, "duplicate data path 'usr/lib/x'"),
        (C + [Member("control", 0o644, b"")], D, {}, "duplicate control path 'control'"),
        (C, [Member("/etc/passwd", 0o644, data=b"")], {}, "'/etc/passwd' is absolute"),
        (C, [Member("usr/../../etc/x", 0o644, data=b"")], {}, "'usr/../../etc/x' contains '..'"),
        (C, [Member("./usr/x", 0o644, data=b"")], {}, "'./usr/x' is not a clean relative path"),
        (C, [Member("usr//x", 0o644, data=b"")], {}, "'usr//x' is not a clean relative path"),
        (C, [Member("usr/x/", 0o644, data=b"")], {}, "'usr/x/' is not a clean relative path"),
        (C, [Member("", 0o644, data=b"")], {}, "'' is not a clean relative path"),
        (C + [Member("sub/postinst", 0o755, b"")], D, {}, "'sub/postinst' is in a subdirectory"),
        (C, D + [Member("usr/lib/x/y", 0o644, data=b"")], {}, "'usr/lib/x' is both a file and a directory"),
        (C, [Member("usr/x", 0o644)], {}, "'usr/x' must give exactly one of data or source"),
        (C, [Member("usr/x", 0o644, b"", Path("/etc/hostname"))], {}, "'usr/x' must give exactly one"),
        (C, D, {"compression": "bzip2"}, "unknown compression 'bzip2': use one of xz, gzip, zstd, none"),
        (C, D, {"name": "../evil"}, "package name '../evil' cannot name a .deb"),
        (C, D, {"version": "1.0/2"}, "package version '1.0/2' cannot name a .deb"),
    ],
)
def test_refusals_name_the_path_and_write_nothing(tmp_path, control, data, kw, says):
    out = tmp_path / "out"
    out.mkdir()
    kw = {"name": "t", "version": "1.0", "mtime": MTIME, **kw}
    with pytest.raises(BuildError) as e:
        write(control, data, out, **kw)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert files_in(out) == []


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_source_names_it_and_leaves_nothing(tmp_path, kind):
    out, source = tmp_path / "out", tmp_path / "gone.conf"
    out.mkdir()
    if kind == "directory":
        source.mkdir()
    data = D + [Member("etc/demo/demo.conf", 0o644, source=source)]
    with pytest.raises(BuildError) as e:
        write(C, data, out, name="t", version="1.0", mtime=MTIME)
    assert f"cannot read {source} (for etc/demo/demo.conf)" in str(e.value)
    assert files_in(out) == []


def test_permission_denied_source_names_it_and_leaves_nothing(tmp_path):
    """Root reads anything, so write() runs in a user namespace where it is an ordinary
    user without CAP_DAC_OVERRIDE: a mode-000 file is then really unreadable."""
    unshare = require_tool("unshare")
    source, out = tmp_path / "secret.conf", tmp_path / "out"
    source.write_bytes(b"token=1\n")
    source.chmod(0o000)
    out.mkdir()
    out.chmod(0o777)  # writable for the namespace's unmapped user
    script = (
        "import sys; from pathlib import Path; from builder.debfile import Member, write\n"
        "from builder.errors import BuildError\n"
        "try:\n"
        "    write([], [Member('etc/secret.conf', 0o600, source=Path(sys.argv[1]))], Path(sys.argv[2]),\n"
        "          name='t', version='1.0', mtime=0)\n"
        "except BuildError as e:\n"
        "    sys.exit(str(e))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [unshare, "--user", sys.executable, "-c", script, str(source), str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if "unshare failed" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"no user namespaces here: {proc.stderr.strip()}")
    assert proc.stderr.strip() == f"cannot read {source} (for etc/secret.conf): Permission denied"
    assert files_in(out) == []


def test_source_shorter_than_its_size_is_refused(tmp_path):
    """sysfs files claim 4096 bytes and give fewer: a real short read, like a file truncated mid-build."""
    source = Path("/sys/kernel/uevent_seqnum")
    if not source.is_file() or source.stat().st_size <= len(source.read_bytes()):
        pytest.skip("no sysfs file with a short read here")
    out = tmp_path / "out"
    with pytest.raises(BuildError, match="ended before its size"):
        write(C, [Member("x", 0o644, source=source)], out, name="t", version="1.0", mtime=MTIME)
    assert files_in(out) == []


def test_failed_rename_removes_the_temp_file(tmp_path):
    out = tmp_path / "out"
    (out / "t_1.0_all.deb").mkdir(parents=True)  # os.replace cannot put a file over a directory
    with pytest.raises(BuildError, match=r"cannot write .*t_1\.0_all\.deb"):
        build(tmp_path)
    assert files_in(out) == ["t_1.0_all.deb"] and (out / "t_1.0_all.deb").is_dir()


def test_interrupt_removes_the_temp_file(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(debfile.os, "fsync", interrupted)  # Ctrl-C at the very last step
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path)
    assert files_in(tmp_path / "out") == []


def test_zstd_without_zstandard_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # makes `import zstandard` fail
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError) as e:
        write(C, D, out, name="t", version="1.0", compression="zstd", mtime=MTIME)
    assert str(e.value) == "zstd compression needs the 'zstandard' package: pip install 'debship[zstd]'"
    assert files_in(out) == []


@pytest.mark.parametrize(
    "name, kind, size, mtime",
    [
        ("./", tarfile.DIRTYPE, 0, 0),
        ("./usr/lib/demo/", tarfile.DIRTYPE, 0, MTIME),
        ("./x", tarfile.REGTYPE, 1, 8**11 - 1),
        ("./" + "n" * 98, tarfile.REGTYPE, 8**11 - 1, MTIME),  # exactly 100 bytes: the last one that fits
        ("./" + "n" * 99, tarfile.REGTYPE, 5, MTIME),  # 101 bytes: a GNU long-name entry first
        ("./caf\u00e9/\u00fc.txt", tarfile.REGTYPE, 12345, MTIME),
        ("./big", tarfile.REGTYPE, 8**11, MTIME),  # too big for octal: base-256
    ],
)
def test_tar_headers_are_tarfiles_own(name, kind, size, mtime):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, 0o755, size, mtime
    info.uname = info.gname = "root"
    expected = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert debfile._header(name, 0o755, size, mtime, kind) == expected
