"""builder.version: checked against the real ``dpkg --compare-versions``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from builder.errors import ConfigError
from builder.version import compare, from_git_describe, git_version, keys_for, to_debian, validate

REQUIRE_ALL = os.environ.get("DEBSHIP_REQUIRE_ALL") == "1"


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        if REQUIRE_ALL:
            pytest.fail(f"{tool} not on PATH and DEBSHIP_REQUIRE_ALL=1")
        pytest.skip(f"{tool} not on PATH")


def dpkg_cmp(a: str, b: str) -> int:
    """What real dpkg says: -1/0/1, asking lt, eq and gt separately."""
    _need("dpkg")
    said = [subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0 for op in ("lt", "eq", "gt")]
    assert said.count(True) == 1, (a, b, said)
    return said.index(True) - 1


def assert_ascending(chain: list[str]) -> None:
    for lo, hi in zip(chain, chain[1:]):
        assert compare(lo, hi) == -1, (lo, hi)
        assert compare(hi, lo) == 1, (hi, lo)
        assert dpkg_cmp(lo, hi) == -1, (lo, hi)


# --- compare ------------------------------------------------------------------

PAIRS = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.10", "1.9", 1),
    ("1.0", "1.0-0", 0),
    ("1.0", "1.0-1", -1),
    ("1.0-1", "1.0-2", -1),
    ("1.0-10", "1.0-9", 1),
    ("1.0-0", "1.0-00", 0),
    ("0:1.0", "1.0", 0),
    ("1:0.1", "9.9", 1),
    ("2:1.0", "10:0.1", -1),
    ("01:1.0", "1:1.0", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0~~a", "1.0~", -1),
    ("1.0~", "1.0", -1),
    ("1.0~a", "1.0~b", -1),
    ("1.0~rc10", "1.0~rc9", 1),
    ("1.0+git5", "1.0", 1),
    ("1.0+git5", "1.0+git12", -1),
    ("1.0+git5", "1.0.1", -1),
    ("1.0+git5", "1.1", -1),
    ("1.0a", "1.0", 1),
    ("1.0a", "1.0.", -1),
    ("1.0a", "1.0+", -1),
    ("1.0A", "1.0a", -1),
    ("1.0Z", "1.0a", -1),
    ("1.0+", "1.0.", -1),
    ("1.0-", "1.0", None),  # invalid: skipped below, dpkg refuses it too
    ("1.001", "1.1", 0),
    ("1.0010", "1.9", 1),
    ("1.00", "1.0", 0),
    ("1.0", "1.0.0", -1),
    ("1.2.3", "1.2.3.1", -1),
    ("1.2a", "1.2.1", -1),
    ("1.2.3-1", "1.2.3-1ubuntu1", -1),
    ("1.2.3-1ubuntu1", "1.2.3-2", -1),
    ("1.2.3-1~bpo1", "1.2.3-1", -1),
    ("1.2.3-1+b1", "1.2.3-1", 1),
    ("1.2.3-1.1", "1.2.3-1+b1", 1),
    ("1.2-3-4", "1.2-3-5", -1),
    ("1.2-3-4", "1.2-4", 1),
    ("1:1.2:3", "1:1.2:4", -1),
    ("1:1.2:3", "1:1.2.3", 1),
    ("2.0", "10.0", -1),
    ("1.0.0~~dev4", "1.0.0~a1", -1),
    ("1.0.0~a1", "1.0.0~b1", -1),
    ("7.6p2-4", "7.6-0", 1),
    ("1.0.3-3", "1.0-1", 1),
    ("1.3", "1.2.2-2", 1),
    ("1.3", "1.2.2", 1),
    ("0-pre", "0-pre", 0),
    ("0-pre", "0-pree", -1),
    ("1.1.6r2-2", "1.1.6r-1", 1),
    ("2.6b2-1", "2.6b-2", 1),
    ("98.1-pre2-b6-2", "98.1p5-1", 1),
    ("0.4a6-2", "0.4-1", 1),
    ("1:3.0.5+dfsg-2", "3.0.5+dfsg-3", 1),
]
VALID_PAIRS = [p for p in PAIRS if p[2] is not None]


def test_pair_table_is_big_enough():
    assert len(VALID_PAIRS) >= 40


@pytest.mark.parametrize("a,b,expected", VALID_PAIRS)
def test_compare_literal(a, b, expected):
    assert compare(a, b) == expected
    assert compare(b, a) == -expected


@pytest.mark.parametrize("a,b,expected", VALID_PAIRS)
def test_compare_agrees_with_dpkg(a, b, expected):
    assert dpkg_cmp(a, b) == expected == compare(a, b)


def test_sort_key_orders_every_pair_as_compare_does():
    versions = sorted(
        {v for a, b, _ in VALID_PAIRS for v in (a, b)}
        | {
            "0",
            "1.0",
            "1.00",
            "1.0-0",
            "0:1.0",
            "1.0~",
            "1.0a",
            "1.0.0",
            "1.0-0~",
            "1.0-",
            "0.1",
            "1.0-1~bpo1",
            "1.0-1",
            "1.0-1.1",
            "2:0",
            "1:9.9",
            "1.0+~",
            "1.0~~a",
        }
        - {"1.0-"}
    )
    key = keys_for(versions)
    for a in versions:
        for b in versions:
            assert (key(a) > key(b)) - (key(a) < key(b)) == compare(a, b), (a, b)


def test_compare_rejects_invalid_version_naming_it():
    with pytest.raises(ConfigError, match=r"version '1\.0-'.*revision"):
        compare("1.0-", "1.0")


# --- validate ---------------------------------------------------------------

GOOD = [
    "1",
    "0",
    "1.2.3",
    "1:1.0",
    "1.0-1",
    "1.0~rc1",
    "1.0+git5.gabc",
    "1:1.2:3-4",
    "1.2-3-4",
    "2.0a",
    "1.0-1~bpo11+1",
    "0~git.gabcdef1",
    "1.0-A.b~c+d",
]
BAD = {
    "": "empty",
    "a1.0": "start with a digit",
    "1.0 ": "whitespace",
    "1.0\n": "whitespace",
    "x:1.0": "epoch 'x'",
    ":1.0": "epoch",
    "1:": "start with a digit",
    "-1": "start with a digit",
    "1.0-": "revision after the last '-' is empty",
    "1.0_1": "'_' is not allowed in the upstream",
    "1.2:3": "epoch '1.2'",
    "1.0-1:2": "epoch '1.0-1'",
    "1.0-1:2-3": "epoch '1.0-1'",
    "1.0:2": "epoch '1.0'",
    "1.0+x:y": "epoch '1.0+x'",
    "1.0-a_b": "'_' is not allowed in the revision",
    "1:1.0-a:b": "':' is not allowed in the revision",
    "1.0!": "'!' is not allowed",
    "99999999999:1.0": "too large",
    "1.0-1-": "revision after the last '-' is empty",
}


@pytest.mark.parametrize("v", GOOD)
def test_validate_good(v):
    assert validate(v) == v
    assert dpkg_cmp(v, v) == 0


@pytest.mark.parametrize("v,why", sorted(BAD.items()))
def test_validate_bad(v, why):
    with pytest.raises(ConfigError) as info:
        validate(v)
    msg = str(info.value)
    assert msg.startswith(f"version {v!r}: not a valid Debian version")
    assert why in msg
    assert "[tool.debship].version" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("v", [v for v in BAD if v and v.strip() == v and v[0] != "-"])
def test_dpkg_also_objects_to_bad(v):
    _need("dpkg")
    r = subprocess.run(["dpkg", "--compare-versions", v, "eq", v], capture_output=True, text=True)
    assert r.returncode != 0 or "bad syntax" in r.stderr, (v, r)


# --- to_debian ------------------------------------------------------------------

CONVERSIONS = [
    ("1.3.0rc1", "1.3.0~rc1"),
    ("1.3.0-rc.1", "1.3.0~rc.1"),
    ("1.3.0-rc1", "1.3.0~rc1"),
    ("1.3.0-alpha", "1.3.0~alpha"),
    ("1.3.0-beta.2+build.5", "1.3.0~beta.2+build.5"),
    ("1.3.0a1", "1.3.0~a1"),
    ("1.3.0alpha1", "1.3.0~a1"),
    ("1.3.0b2", "1.3.0~b2"),
    ("1.3.0c3", "1.3.0~rc3"),
    ("1.3.0RC1", "1.3.0~rc1"),
    ("1.3.0rc", "1.3.0~rc0"),
    ("1.3.0.dev4", "1.3.0~~dev4"),
    ("1.3.0-dev.4", "1.3.0~~dev4"),
    ("1.3.0rc1.dev2", "1.3.0~rc1~~dev2"),
    ("1.3.0.post1", "1.3.0+post1"),
    ("1.3.0-post1", "1.3.0+post1"),
    ("1.3.0.post1.dev2", "1.3.0+post1~~dev2"),
    ("v1.2.3", "1.2.3"),
    ("V1.2.3", "1.2.3"),
    ("1!2.0", "1:2.0"),
    ("1!2.0rc1", "1:2.0~rc1"),
    ("1.2+abc", "1.2+abc"),
    ("1.2+abc_def-1", "1.2+abc.def.1"),
    ("1.2.3", "1.2.3"),
    ("1.2.3-1", "1.2.3-1"),
    ("1:1.2.3-1", "1:1.2.3-1"),
    ("1.0~rc1", "1.0~rc1"),
    ("2.0+dfsg-1", "2.0+dfsg-1"),
    (" 1.2.3\n", "1.2.3"),
]


@pytest.mark.parametrize("pep,deb", CONVERSIONS)
def test_to_debian(pep, deb):
    assert to_debian(pep) == deb
    assert validate(deb) == deb


def test_to_debian_ordering_chain_pep440():
    chain = [
        "1.2.0",
        "1.3.0.dev4",
        "1.3.0a1.dev1",
        "1.3.0a1",
        "1.3.0a2",
        "1.3.0b1",
        "1.3.0b2",
        "1.3.0rc1.dev1",
        "1.3.0rc1",
        "1.3.0rc2",
        "1.3.0",
        "1.3.0+local",
        "1.3.0.post1.dev1",
        "1.3.0.post1",
        "1.3.0.post2",
        "1.3.1.dev0",
        "1.3.1",
        "1!0.1",
    ]
    assert_ascending([to_debian(v) for v in chain])


def test_to_debian_ordering_chain_semver():
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
    ]
    assert_ascending([to_debian(v) for v in chain])


@pytest.mark.parametrize("bad", ["", "v", "latest", "1.0 beta", "vx1", "1.2.3_x!"])
def test_to_debian_rejects_naming_value(bad):
    with pytest.raises(ConfigError) as info:
        to_debian(bad)
    assert str(info.value).startswith(f"version {bad!r}:")
    assert "\n" not in str(info.value)


# --- from_git_describe ----------------------------------------------------------

DESCRIBES = [
    ("v1.2.3-0-gabcdef1", "1.2.3"),
    ("v1.2.3-5-gabcdef1", "1.2.3+git5.gabcdef1"),
    ("v1.2.3-12-g0000000\n", "1.2.3+git12.g0000000"),
    ("1.2.3-5-gabcdef1", "1.2.3+git5.gabcdef1"),
    ("v1.3.0rc1-0-gabc1234", "1.3.0~rc1"),
    ("v1.3.0rc1-2-gabc1234", "1.3.0~rc1+git2.gabc1234"),
    ("v1.3.0-rc.1-2-gabc1234", "1.3.0~rc.1+git2.gabc1234"),
    ("v1.2.3-1-3-gabc1234", "1.2.3-1+git3.gabc1234"),
    ("v1.2.3-5-gabcdef1-dirty", "1.2.3+git5.gabcdef1.dirty"),
    ("v1.2.3-0-gabcdef1-dirty", "1.2.3+git0.gabcdef1.dirty"),
    ("abcdef1", "0~git.gabcdef1"),
    ("0123abc", "0~git.g0123abc"),
    ("abcdef1-dirty", "0~git.gabcdef1.dirty"),
]


@pytest.mark.parametrize("desc,deb", DESCRIBES)
def test_from_git_describe(desc, deb):
    assert from_git_describe(desc) == deb


def test_from_git_describe_ordering():
    g = from_git_describe
    assert_ascending(
        [
            g("abcdef1"),
            "0.1",
            g("v1.2.3-0-gabcdef1"),
            g("v1.2.3-0-gabcdef1-dirty"),
            g("v1.2.3-5-gabcdef1"),
            g("v1.2.3-5-gabcdef1-dirty"),
            g("v1.2.3-12-g0000000"),
            "1.2.3.1",
            "1.2.4",
        ]
    )


def test_from_git_describe_prerelease_ordering():
    chain = [
        "1.3.0~rc1",
        from_git_describe("v1.3.0rc1-2-gabc1234"),
        from_git_describe("v1.3.0rc1-10-gabc1234"),
        "1.3.0~rc2",
        "1.3.0",
    ]
    assert_ascending(chain)


@pytest.mark.parametrize(
    "desc,fragment",
    [
        ("release-foo-3-gabc1234", "git tag 'release-foo'"),
        ("", "git describe output ''"),
        ("not a describe", "git describe output 'not a describe'"),
    ],
)
def test_from_git_describe_rejects(desc, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        from_git_describe(desc)


# --- git_version ------------------------------------------------------------------


@pytest.fixture
def git_env(monkeypatch, tmp_path):
    _need("git")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Debship Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def _git(repo, *args):
    return subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_git_version_after_tag(git_env, tmp_path):
    repo = tmp_path / "proj"
    repo.mkdir()
    _git(repo, "init", "-q")
    for i in range(3):
        (repo / "f").write_text(str(i))
        _git(repo, "add", "f")
        _git(repo, "commit", "-q", "-m", f"c{i}")
        if i == 0:
            _git(repo, "tag", "v1.2.3")
    got = git_version(repo)
    m = re.fullmatch(r"1\.2\.3\+git2\.g([0-9a-f]{7,})", got or "")
    assert m, got
    assert _git(repo, "rev-parse", "HEAD").startswith(m[1])
    assert compare("1.2.3", got) == -1 == dpkg_cmp("1.2.3", got)


def test_git_version_untagged_and_not_a_repo(git_env, tmp_path):
    assert git_version(tmp_path) is None
    _git(tmp_path, "init", "-q")
    assert git_version(tmp_path) is None  # no commits yet
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "commit", "-q", "-m", "c")
    head = _git(tmp_path, "rev-parse", "HEAD")
    got = git_version(tmp_path)
    assert got.startswith("0~git.g") and head.startswith(got[len("0~git.g") :])


def test_git_version_without_git(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_version(tmp_path) is None
