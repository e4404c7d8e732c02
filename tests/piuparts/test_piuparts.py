"""Debian's piuparts on the corpus (tests/harness/corpus.py) in a cached bookworm base, offline:
every package passes install -> purge ("PASS: All tests."), the upgrade that drops a unit and a
conffile passes piuparts' upgrade test from a local repository (v1 -> v2), and so does the
downgrade (v2 -> v1).  Runs two piuparts at a time.  Needs root, mmdebstrap and piuparts;
skipped otherwise unless DEBSHIP_REQUIRE_ALL=1.  Heavy: run it under the shared lock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.corpus import UPGRADES, build_all
from tests.harness.helpers import require_root, require_tool

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    require_root()
    for tool in ("mmdebstrap", "piuparts", "dpkg-scanpackages"):
        require_tool(tool)
    from hostlab import piuparts

    work = tmp_path_factory.mktemp("piuparts")
    built = build_all(work / "debs")
    base = piuparts.base_tarball()
    runs = {bundle: (b.deb, []) for bundle, b in built.items()}
    for old, new in UPGRADES:
        runs[f"{old}->{new}"] = (built[new].deb, [built[old].deb])  # upgrade
        runs[f"{new}->{old}"] = (built[old].deb, [built[new].deb])  # downgrade
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(piuparts.run, deb, work / name.replace(">", ""), older, base)
            for name, (deb, older) in runs.items()
        }
        return {name: f.result() for name, f in futures.items()}


def test_every_package_and_upgrade_passes(results):
    failed = {name: r.tail() for name, r in results.items() if not r.passed}
    assert failed == {}, "\n\n".join(f"== {name}\n{tail}" for name, tail in failed.items())
    assert len(results) >= 12


def test_the_upgrade_and_downgrade_were_really_tested(results):
    for old, new in UPGRADES:
        for name in (f"{old}->{new}", f"{new}->{old}"):
            log = results[name].log
            assert "apt-cache knows about the following packages: corpus-drop" in log, name
            assert "PASS: Installation, upgrade and purging tests." in log, name
