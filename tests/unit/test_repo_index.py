"""The apt repository as data (builder/repo.py) and the cloud-init user-data
(builder/cloudinit.py): pure functions, read back with python-debian."""

from __future__ import annotations

import gzip
import hashlib
import lzma
from pathlib import Path

import pytest

from builder import cloudinit, gpg, repo
from builder.cli import main
from builder.errors import ConfigError, RepoError
from debian import deb822
from tests.harness.helpers import cli_runner


def pkg(name="demo", version="1.0", arch="all", data=b"x") -> repo.PoolPackage:
    control = (
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: T <t@example.com>\n"
        f"Description: test package\n a long line\n .\n another paragraph\n"
    )
    return repo.PoolPackage(
        repo.pool_path("main", name, version, arch),
        name,
        version,
        arch,
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
        len(data),
        control,
        Path("/nonexistent") / f"{name}_{version}.deb",
    )


@pytest.mark.parametrize(
    "name, version, expected",
    [
        ("demo-svc", "1.0.0", "pool/main/d/demo-svc/demo-svc_1.0.0_all.deb"),
        ("libfoo", "2.0-1", "pool/main/libf/libfoo/libfoo_2.0-1_all.deb"),
        ("lib", "1", "pool/main/l/lib/lib_1_all.deb"),
        ("demo", "2:1.0~rc1", "pool/main/d/demo/demo_1.0~rc1_all.deb"),  # file names drop the epoch
    ],
)
def test_pool_path_follows_debians_layout(name, version, expected):
    assert repo.pool_path("main", name, version, "all") == expected


def test_each_arch_index_lists_its_own_and_the_all_packages_sorted_by_version():
    pkgs = [pkg("tool", "1.10"), pkg("tool", "1.9"), pkg("native", "1", "amd64"), pkg("other", "1", "arm64")]
    archs = repo.architectures({"main": pkgs})
    assert "amd64" in archs and "riscv64" in archs and "all" not in archs
    indexes = repo.build_indexes({"main": pkgs}, archs)

    def listed(arch):
        text = indexes[f"main/binary-{arch}/Packages"].decode()
        return [(p["Package"], p["Version"]) for p in deb822.Packages.iter_paragraphs(text, use_apt_pkg=False)]

    assert listed("amd64") == [("native", "1"), ("tool", "1.9"), ("tool", "1.10")]
    assert listed("arm64") == [("other", "1"), ("tool", "1.9"), ("tool", "1.10")]
    assert listed("s390x") == listed("all") == [("tool", "1.9"), ("tool", "1.10")]
    plain = indexes["main/binary-amd64/Packages"]
    assert gzip.decompress(indexes["main/binary-amd64/Packages.gz"]) == plain
    assert lzma.decompress(indexes["main/binary-amd64/Packages.xz"]) == plain


def test_packages_paragraph_keeps_the_control_and_adds_where_and_digests():
    p = pkg(data=b"contents")
    para = next(deb822.Packages.iter_paragraphs(repo.packages_index([p]), use_apt_pkg=False))
    assert para["Description"] == "test package\n a long line\n .\n another paragraph"
    assert para["Filename"] == "pool/main/d/demo/demo_1.0_all.deb"
    assert para["Size"] == "8" and para["SHA256"] == hashlib.sha256(b"contents").hexdigest()
    assert para["MD5sum"] == hashlib.md5(b"contents").hexdigest()


def test_release_lists_every_index_with_size_and_digests(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    indexes = repo.build_indexes({"main": [pkg()]}, ("amd64",))
    text = repo.release_text(indexes, "stable", ("amd64",), ["main"], "debship", "fleet", repo._release_date())
    rel = deb822.Release(text)
    assert (rel["Suite"], rel["Codename"], rel["Label"]) == ("stable", "stable", "fleet")
    assert rel["Date"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert rel["Architectures"] == "all amd64" and rel["Components"] == "main"
    assert rel["Acquire-By-Hash"] == "yes"
    sha = {e["name"]: (e["sha256"], int(e["size"])) for e in rel["SHA256"]}
    assert sha == {name: (hashlib.sha256(b).hexdigest(), len(b)) for name, b in indexes.items()}
    assert {e["name"] for e in rel["MD5Sum"]} == set(indexes)


def test_release_date_refuses_a_bad_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(RepoError, match="SOURCE_DATE_EPOCH='yesterday'"):
        repo._release_date()


def test_merge_skips_the_same_bytes_and_refuses_other_bytes_under_one_version(tmp_path):
    members = [pkg(data=b"one")]
    added, unchanged = repo.merge(members, [pkg(data=b"one"), pkg(version="2.0", data=b"two")], tmp_path)
    assert [p.version for p in added] == ["2.0"] and [p.version for p in unchanged] == ["1.0"]
    assert [p.version for p in members] == ["1.0", "2.0"]
    with pytest.raises(RepoError, match=r"demo 1.0 \(all\) is already published with other contents"):
        repo.merge(members, [pkg(data=b"changed")], tmp_path)


def test_merge_refuses_a_leftover_pool_file_with_other_bytes(tmp_path):
    leftover = tmp_path / repo.pool_path("main", "demo", "3.0", "all")
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"from an interrupted publish")
    with pytest.raises(RepoError, match="exists with other contents"):
        repo.merge([], [pkg(version="3.0", data=b"new")], tmp_path)


def test_sources_stanza_is_deb822_apt_reads():
    text = repo.sources_deb822(
        "https://apt.example.com/fleet", "stable", "main", "/etc/apt/keyrings/fleet.gpg", "fleet"
    )
    assert text.startswith("# fleet: ")
    para = deb822.Deb822(text.split("\n", 1)[1])
    assert dict(para) == {
        "Types": "deb",
        "URIs": "https://apt.example.com/fleet",
        "Suites": "stable",
        "Components": "main",
        "Signed-By": "/etc/apt/keyrings/fleet.gpg",
    }


def test_crc24_is_openpgps():
    assert gpg._crc24(b"") == 0xB704CE
    assert gpg._crc24(b"123456789") == 0x21CF02  # the CRC-24/OPENPGP check value


def test_armored_key_passes_armor_through_and_refuses_other_files():
    armored = f"{gpg.ARMOR_BEGIN}\n\nmDMEaa==\n=abcd\n{gpg.ARMOR_END}\n"
    assert gpg.armored_key(armored.encode(), "k") == armored
    with pytest.raises(RepoError, match="k is not an OpenPGP public key"):
        gpg.armored_key(b"hello", "k")
    with pytest.raises(RepoError, match="has no"):
        gpg.armored_key(armored.replace(gpg.ARMOR_END, "").encode(), "k")


KEY = f"{gpg.ARMOR_BEGIN}\n\nmDMEZ0000\n=AbCd\n{gpg.ARMOR_END}\n"


def test_user_data_adds_the_source_with_its_key_and_installs_the_packages():
    text = cloudinit.user_data("http://10.0.0.5/fleet", KEY, [("demo-svc", None), ("fleet-agent", "1.2.0")])
    assert text.splitlines() == [
        "#cloud-config",
        "# apt source debship: http://10.0.0.5/fleet stable main, signed; written by debship cloud-init",
        "package_update: true",
        "apt:",
        "  preserve_sources_list: true",
        "  sources:",
        '    "debship.list":',
        '      source: "deb [signed-by=$KEY_FILE] http://10.0.0.5/fleet stable main"',
        "      key: |",
        f"        {gpg.ARMOR_BEGIN}",
        "",
        "        mDMEZ0000",
        "        =AbCd",
        f"        {gpg.ARMOR_END}",
        "packages:",
        '  - "demo-svc"',
        '  - ["fleet-agent", "1.2.0"]',
    ]


@pytest.mark.parametrize("url", ["ftp://x/", "http://a b/", "apt.example.com"])
def test_user_data_refuses_a_url_apt_cannot_take(url):
    with pytest.raises(RepoError, match="is not an http"):
        cloudinit.user_data(url, KEY, [])


def test_package_spec_is_name_or_name_equals_version():
    assert cloudinit.parse_package("demo") == ("demo", None)
    assert cloudinit.parse_package("demo=1:2.0-1") == ("demo", "1:2.0-1")
    with pytest.raises(RepoError, match="not a Debian package name"):
        cloudinit.parse_package("Demo_Svc")
    with pytest.raises(ConfigError, match="not a valid Debian version"):
        cloudinit.parse_package("demo=1 .0")


def test_publish_of_a_missing_deb_is_one_line_and_writes_nothing(tmp_path):
    r = cli_runner().invoke(
        main,
        ["publish", str(tmp_path / "nope.deb"), "--repo", str(tmp_path / "repo"), "--sign-key", "test@example.com"],
    )
    assert r.exit_code == 7
    assert r.stderr.startswith("publish: error: ") and "nope.deb: cannot read the package" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "repo").exists()


def test_publish_refuses_a_suite_that_is_a_path(tmp_path):
    r = cli_runner().invoke(
        main, ["publish", "x.deb", "--repo", str(tmp_path / "repo"), "--suite", "../etc", "--sign-key", "k"]
    )
    assert r.exit_code == 7 and "suite '../etc' is not a plain name" in r.stderr


def test_cloud_init_with_an_unreadable_key_file_is_one_line(tmp_path):
    r = cli_runner().invoke(main, ["cloud-init", "--repo", "http://x/", "--repo-key", str(tmp_path / "k.asc")])
    assert r.exit_code == 7 and r.stderr.startswith("cloud-init: error: --repo-key ")
    assert len(r.stderr.splitlines()) == 1
