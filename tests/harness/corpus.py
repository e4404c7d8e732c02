"""The corpus of bundles shaped like users' (tests/fixtures/corpus/, plus this repository's sample and
the nightly-backup fixture): built once per test session, read by the lintian and piuparts tiers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.harness.project import REPO

CORPUS = REPO / "tests" / "fixtures" / "corpus"
# Bundles build-deb must refuse, with the words the message must hold.
REFUSED = {
    "refused-usr-local": ('install.scripts = "/usr/local/bin"', "belongs to the local admin", '"/usr/lib/{name}"'),
    "refused-srv": ('install.configs = "/srv/{name}"', "belongs to the local admin", '"/var/lib/{name}"'),
}
# Upgrade pairs: (old bundle, new bundle); piuparts also runs each the other way (a downgrade).
UPGRADES = (("drop-v1", "drop-v2"),)


@dataclass(frozen=True)
class Built:
    bundle: str
    name: str
    version: str
    deb: Path


def bundles() -> dict[str, Path]:
    found = {p.name: p for p in sorted(CORPUS.iterdir()) if (p / "debship.toml").is_file()}
    found["sample"] = REPO
    found["nightly-backup"] = REPO / "tests" / "fixtures" / "nightly-backup"
    return found


def build_all(out: Path) -> dict[str, Built]:
    """Every bundle but the refused ones, built into ``out/<bundle>/``."""
    from builder.build import build_deb

    built = {}
    for bundle, project in bundles().items():
        if bundle in REFUSED:
            continue
        deb = build_deb(project, out / bundle)
        built[bundle] = Built(bundle, deb.name, deb.version, deb.path)
    return built
