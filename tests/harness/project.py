"""Test projects: the minimal one, a copy of this repository's sample bundle, ways to break them."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

MINIMAL = {
    "debship.toml": """
        name = "demo-svc"
        version = "1.0.0"
        maintainer = "Demo Team <demo@example.com>"
        description = "demo service for tests"
        depends = ["python3"]
        startup = false
    """,
    "units/demo-svc.service": """
        [Unit]
        Description=Demo service
        Documentation=man:demo(1)

        [Service]
        ExecStart=/usr/bin/python3 /usr/lib/demo-svc/serve.py
        Restart=on-failure

        [Install]
        WantedBy=multi-user.target
    """,
    "scripts/serve.py": """
        #!/usr/bin/python3
        print("serving")
    """,
    "configs/demo.conf": """
        # demo settings
        port = 8080
    """,
}


def write_project(root: Path, files: dict) -> Path:
    """Write a project from {relative path: text}; text is dedented; *.py become executable."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        if rel.endswith(".py"):
            path.chmod(0o755)
    return root


def copy_sample(dest: Path) -> Path:
    """A copy of this repository's sample project at ``dest``: pyproject.toml, units/, scripts/, configs/, debian/."""
    for name in ("units", "scripts", "configs", "debian"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def break_startup(project: Path) -> None:
    """Make the project's startup.py exit at once with 'startup failed on purpose'."""
    startup = project / "scripts" / "startup.py"
    text = startup.read_text()
    cut = text.index("\n") + 1  # after the shebang
    startup.write_text(text[:cut] + "raise SystemExit('startup failed on purpose')\n" + text[cut:])
