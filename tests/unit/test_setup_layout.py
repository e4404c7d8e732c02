"""`tools/setup.sh` installs debship editable without setuptools' "Editable installation …
folders with the same name as your package" warning.  setuptools gives that warning whenever
it has to install an import hook (its meta path finder), which it does unless the layout is
"simple": every package under the one root ``"" = "."`` at the folder its dotted name says.
These check that layout (and that the wheel's templates are debian/'s), without a network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def test_every_package_is_where_its_name_says_under_one_root():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "."}
    for package in setuptools["packages"]:
        folder = REPO / Path(*package.split("."))
        assert folder.is_dir(), f"{package}: no folder {folder}"


def test_the_templates_package_is_the_debian_folder():
    templates = REPO / "builder" / "templates"
    assert templates.is_symlink() and os.readlink(templates) == "../debian"
    assert sorted(p.name for p in templates.glob("*.j2")) == sorted(p.name for p in (REPO / "debian").glob("*.j2"))
