"""Values at the edge of what the configuration checks let through (issue 26) build
packages lintian passes with no error and no warning: the fixes build-deb makes
(an executable config installed 0644) and the forms it accepts (a versioned
essential dependency, a homepage with its scheme, the /usr/lib unit folder,
deprecated unit settings that systemd still loads)."""

from __future__ import annotations

import subprocess

from builder.build import build_deb
from tests.harness.helpers import require_tool


def test_edge_values_build_lintian_clean_packages(project, tmp_path):
    require_tool("lintian")
    (project / "configs" / "demo.conf").chmod(0o755)
    with open(project / "debship.toml", "a") as f:
        f.write(
            'homepage = "https://example.com/demo"\n'
            'long-description = "Serves the demo for the tests, with its configuration."\n'
            'depends = ["python3", "bash (>= 5.0)"]\n'
            '[install]\nunits = "/usr/lib/systemd/system"\n'
        )
    text = (project / "debship.toml").read_text().replace('depends = ["python3"]\n', "", 1)
    (project / "debship.toml").write_text(text)
    unit = project / "units" / "demo-svc.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=on-failure\nMemoryLimit=1G"))
    warnings: list[str] = []
    deb = build_deb(project, tmp_path / "out", warn=warnings.append).path
    assert len(warnings) == 2 and "MemoryMax" in " ".join(warnings) and "0644" in " ".join(warnings)
    proc = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)], capture_output=True, text=True)
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert proc.returncode == 0 and not tags, proc.stdout + proc.stderr
