"""The corpus through lintian of Debian 12 (this machine's, 2.116) and of Debian 13 (2.122, installed
in a cached trixie root): no error and no warning on any package (the /opt override file aside,
which lintian reports as "O:"), and the bundles asking for admin folders refused with their fix.
The info and experimental tags that remain are listed, with why, in docs/packaging.md.

Needs lintian; the Debian 13 half needs root and mmdebstrap.  Skipped otherwise unless
DEBSHIP_REQUIRE_ALL=1.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.harness.corpus import REFUSED, build_all, bundles
from tests.harness.helpers import cli_runner, require_root, require_tool

# Tags lintian may still print (info "I:" and experimental "X:"); docs/packaging.md explains each.
DOCUMENTED = {
    "package-supports-alternative-init-but-no-init.d-script",
    "systemd-service-file-missing-install-key",
    "package-contains-documentation-outside-usr-share-doc",
    "executable-in-usr-lib",
    "systemd-service-file-missing-hardening-features",
}
# Every tag, overridden ones too (exit 2 then: an overridden warning still counts); the output is judged.
FLAGS = ("--info", "--display-experimental", "--pedantic", "--show-overrides", "--tag-display-limit", "0")
TAG = re.compile(r"^([EWIXPO]): (\S+): (\S+)")


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("corpus"))


def _check(output: str, built: dict) -> None:
    tags = [m.groups() for line in output.splitlines() if (m := TAG.match(line))]
    bad = [t for t in tags if t[0] in "EW"]
    assert bad == [], bad
    undocumented = {t[2] for t in tags if t[0] in "IXP"} - DOCUMENTED
    assert undocumented == set(), f"document these tags in docs/packaging.md: {sorted(undocumented)}"
    overridden = {(t[1], t[2]) for t in tags if t[0] == "O"}
    assert overridden <= {
        (b.name, tag) for b in built.values() for tag in ("dir-or-file-in-opt", "missing-intermediate-directory")
    }
    # Every package was read (lintian prints nothing for a clean one, so ask it to list them).
    assert "corpus-opt-app" in {t[1] for t in tags if t[0] == "O"}


def test_corpus_has_the_shapes_the_issue_names():
    names = set(bundles())
    assert len(names) >= 10
    assert {
        "opt-app",
        "refused-usr-local",
        "refused-srv",
        "helper-module",
        "template-units",
        "timer",
        "socket",
        "dropins-only",
        "drop-v1",
        "drop-v2",
        "sample",
    } <= names


@pytest.mark.parametrize("bundle", sorted(REFUSED))
def test_admin_folders_are_refused_with_a_fitting_place(bundle, tmp_path):
    from builder.cli import build_deb

    result = cli_runner().invoke(build_deb, ["--project", str(bundles()[bundle]), "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    for words in REFUSED[bundle]:
        assert words in message
    assert not any(tmp_path.iterdir())


def test_lintian_debian_12(debs):
    lintian = require_tool("lintian")
    import subprocess

    proc = subprocess.run([lintian, *FLAGS, *[str(b.deb) for b in debs.values()]], capture_output=True, text=True)
    assert proc.returncode in (0, 1, 2) and not proc.stderr.strip().startswith("Usage"), proc.stderr
    assert "Lintian v2.116" in subprocess.run([lintian, "--version"], capture_output=True, text=True).stdout
    _check(proc.stdout, debs)


def test_lintian_debian_13(debs):
    require_root()
    require_tool("mmdebstrap")
    from hostlab.rootfs import Root, cached_root

    with Root(cached_root(("lintian",), suite="trixie")) as root:
        (root.path / "debs").mkdir()
        for b in debs.values():
            shutil.copy(b.deb, root.path / "debs" / b.deb.name)
        version = root.run(["lintian", "--version"]).stdout
        assert version.startswith("Lintian v2.122"), version
        proc = root.run(["sh", "-c", "lintian " + " ".join(FLAGS) + " /debs/*.deb"], check=False)
    assert proc.returncode in (0, 1, 2) and not proc.stderr.strip().startswith("Usage"), proc.stderr
    _check(proc.stdout, debs)
