"""debship itself as a Debian package: tools/deb-self.sh builds python3-debship with stdeb and Debian's
python3 toolchain; apt installs it, offline, in a clean Debian 12 or 13 root (no pip, no debship), where
its build-deb makes the same bytes as the venv's from the same sources."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.helpers import _missing, require_root, require_tool
from tests.harness.project import REPO

pytestmark = pytest.mark.root

DEBIAN_DEPS = ("python3-click", "python3-jinja2", "python3-paramiko", "python3-debian")
EPOCH = "1767225600"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def _tree_state() -> list[str]:
    """What git sees beside the tracked files (untracked and ignored), less Python's byte-code caches."""
    out = subprocess.run(
        [require_tool("git"), "-C", str(REPO), "status", "--porcelain", "--ignored"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted(line for line in out.splitlines() if "__pycache__" not in line)


def _pyproject_version() -> str:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def self_deb(tmp_path_factory) -> Path:
    for tool in ("dpkg-buildpackage", "dh_python3", "fakeroot", "help2man"):
        require_tool(tool)
    if subprocess.run(["/usr/bin/python3", "-c", "import stdeb"], capture_output=True).returncode != 0:
        _missing("Debian's python3-stdeb (for /usr/bin/python3)")
    before = _tree_state()
    out = tmp_path_factory.mktemp("self-deb")
    proc = subprocess.run(
        ["bash", str(REPO / "tools/deb-self.sh"), str(out)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _tree_state() == before, "tools/deb-self.sh left files in the repository"
    debs = sorted(out.iterdir())
    assert [d.name for d in debs] == [f"python3-debship_{_pyproject_version()}-1_all.deb"]
    return debs[0]


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        [require_tool("dpkg-deb"), "--field", str(deb), name], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_package_depends_on_debians_python3_libraries(self_deb):
    depends = {d.strip() for d in _field(self_deb, "Depends").split(",")}
    assert set(DEBIAN_DEPS) <= depends
    assert "python3:any" in depends
    assert _field(self_deb, "Maintainer") == "debship developers <debship@example.com>"
    assert _field(self_deb, "Architecture") == "all"


def test_the_package_holds_the_commands_the_templates_and_their_man_pages(self_deb):
    listing = subprocess.run(
        [require_tool("dpkg-deb"), "--contents", str(self_deb)], check=True, capture_output=True, text=True
    ).stdout
    paths = {line.split()[-1] for line in listing.splitlines()}
    for cmd in ("debship", "build-deb", "ship"):
        assert f"./usr/bin/{cmd}" in paths
        assert f"./usr/share/man/man1/{cmd}.1.gz" in paths
    templates = {p.name for p in paths_under(paths, "./usr/lib/python3/dist-packages/builder/templates/")}
    assert templates == {p.name for p in (REPO / "debian").glob("*.j2")}
    assert "./usr/share/doc/python3-debship/copyright" in paths


def paths_under(paths: set[str], prefix: str) -> list[Path]:
    return [Path(p) for p in paths if p.startswith(prefix) and p != prefix]


def test_lintian_finds_no_error_and_the_readme_explains_each_warning(self_deb):
    proc = subprocess.run([require_tool("lintian"), "--pedantic", str(self_deb)], capture_output=True, text=True)
    tags = re.findall(r"^([EW]): python3-debship: (\S+)", proc.stdout, re.M)
    assert [t for t in tags if t[0] == "E"] == [], proc.stdout
    readme = (REPO / "docs" / "install.md").read_text()
    section = readme[readme.index("## debship as a Debian package") :]
    section = section[: section.find("\n## ", 1)]
    for _, tag in tags:
        assert f"`{tag}`" in section, f"lintian warns {tag}; fix it or say why in docs/install.md"


@pytest.fixture(scope="module", params=["bookworm", "trixie"])
def deps_root(request):
    """A cached root of Debian 12 (python3.11, paramiko 2.12) or 13 (python3.13, paramiko 3.5) with python3
    and the four Debian libraries python3-debship needs; no pip."""
    require_root()
    require_tool("mmdebstrap")
    from hostlab.rootfs import cached_root

    return cached_root(("python3", *DEBIAN_DEPS), suite=request.param)


def _copy_sample(dest: Path) -> Path:
    """The sample bundle without its debian/: build-deb then renders the templates it ships itself."""
    for name in ("units", "scripts", "configs"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_apt_installs_it_offline_and_its_build_deb_matches_the_venvs(deps_root, self_deb, tmp_path):
    from hostlab.rootfs import Root

    with Root(deps_root) as root:
        absent = root.run(
            ["sh", "-c", "command -v debship build-deb ship pip pip3; python3 -c 'import pip'"], check=False
        )
        assert absent.stdout == "" and "No module named 'pip'" in absent.stderr
        shutil.copy(self_deb, root.path / "var/tmp" / self_deb.name)
        proc = root.run(
            ["apt-get", "install", "-y", "-q", f"/var/tmp/{self_deb.name}"], env=APT_ENV, offline=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

        _copy_sample(root.path / "srv/sample")
        proc = root.run(
            ["build-deb", "--project", "/srv/sample", "--out", "/srv/out"],
            env={"SOURCE_DATE_EPOCH": EPOCH},
            offline=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        venv_build_deb = Path(sys.executable).parent / "build-deb"
        subprocess.run(
            [str(venv_build_deb), "--project", str(root.path / "srv/sample"), "--out", str(tmp_path)],
            check=True,
            capture_output=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
        )
        built = root.path / "srv/out/fleet-agent_1.0.0_all.deb"
        assert built.read_bytes() == (tmp_path / built.name).read_bytes()

        for cmd in ("debship", "build-deb", "ship"):
            proc = root.run([cmd, "--help"], offline=True, check=False)
            assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: {cmd} "), proc.stdout + proc.stderr
        proc = root.run(["build-deb", "--debship-version"], offline=True, check=False)
        assert proc.stdout.strip() == f"debship {_pyproject_version()}"
