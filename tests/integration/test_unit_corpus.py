"""The unit-corpus tier: every unit file of 43 Debian 12 packages (tests/harness/unitcorpus.py,
downloaded once with ``apt-get download`` and cached), each put in a throwaway bundle and packaged
by build-deb.  It builds, or it is refused for a reason docs/units.md documents, and
``systemd-analyze verify`` is the referee: a unit systemd refuses is refused, and a unit systemd
loads is refused only for what systemd cannot see on a build machine (an account the package does
not create).  Run with -s to see the table of verdicts."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.errors import DebshipError
from tests.harness.helpers import require_tool
from tests.harness.unitcorpus import cached_corpus, corpus_units

# Why build-deb may refuse a real unit (docs/units.md, "The real-world corpus").  The first two are
# systemd's own refusals; the rest are debship's, for what only the host would show.
REASONS = {
    "systemd refuses it": r"systemd-analyze verify refuses the unit|\(systemd refuses",
    "socket without its service": r"the socket activates .*, which is not in the units folder",
    "account the package does not create": r"names a (user|group) the package does not create",
    "shared nobody account": r"=(nobody|nogroup) shares its account",
    "unit type not packaged": r"not a unit file name \(suffix",
}
SYSTEMD_REFUSES = ("systemd refuses it", "socket without its service")
_FATAL = ("bad unit file setting", "fatal error", "Refusing", "failed to load properly", "cannot be started")


def _bundle_name(unit: str) -> str:
    return "corpus-" + re.sub(r"[^a-z0-9+.-]+", "-", unit.lower()).strip("-.")


def _companions(unit: str, text: bytes, package_units: dict[str, bytes]) -> list[str]:
    """The unit a socket, timer or path unit starts, when its package has it."""
    suffix = Path(unit).suffix
    if suffix not in (".socket", ".timer", ".path"):
        return []
    body = text.decode(errors="replace")
    named = re.findall(r"^\s*(?:Service|Unit)\s*=\s*(\S+)", body, re.M)
    accept = re.search(r"^\s*Accept\s*=\s*(yes|true|on|1)\s*$", body, re.M | re.I)
    stem = unit[: -len(suffix)]
    target = named[-1] if named else f"{stem}@.service" if accept else f"{stem}.service"
    return [target] if target in package_units and target != unit else []


def _build(
    workdir: Path, unit: str, files: dict[str, bytes], accounts: tuple[str, ...] = ()
) -> tuple[str, str, list[str]]:
    """('built', '', warnings) or ('refused', reason, [message])."""
    project = workdir / (_bundle_name(unit) + ("-with-accounts" if accounts else ""))
    (project / "units").mkdir(parents=True)
    for name, data in files.items():
        (project / "units" / name).write_bytes(data)
    (project / "debship.toml").write_text(
        f'name = "{_bundle_name(unit)}"\nversion = "1.0"\nmaintainer = "Corpus <corpus@example.com>"\n'
        f'description = "real-world unit {unit} from Debian"\nstartup = false\n'
        f"host-accounts = {list(accounts)!r}\n".replace("'", '"')
        + "[folders]\nscripts = false\nconfigs = false\n"
    )
    warnings: list[str] = []
    try:
        built = build_deb(project, workdir / "out", warn=warnings.append)
    except DebshipError as e:
        message = str(e)
        reason = next((r for r, pattern in REASONS.items() if re.search(pattern, message)), "UNDOCUMENTED")
        return "refused", reason, [message]
    contents = subprocess.run(
        ["dpkg-deb", "--contents", str(built.path)], capture_output=True, text=True, check=True
    ).stdout
    assert f"/systemd/system/{unit}\n" in contents
    return "built", "", warnings


def _referee(package_units: dict[str, bytes]) -> set[str]:
    """The units of one package ``systemd-analyze verify`` refuses, all verified together."""
    with tempfile.TemporaryDirectory(prefix="debship-referee-") as tmp:
        paths = []
        for name, data in package_units.items():
            (Path(tmp) / name).write_bytes(data)
            paths.append(str(Path(tmp) / name))
        proc = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", "--generators=no", *paths],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    refused = set()
    for line in proc.stderr.splitlines():
        if any(m in line for m in _FATAL):
            refused.update(n for n in package_units if re.search(rf"(^|[\s/]){re.escape(n)}(:|\s|$)", line))
    return refused


@pytest.fixture(scope="module")
def corpus():
    for tool in ("apt-get", "dpkg-deb", "systemd-analyze"):
        require_tool(tool)
    return corpus_units(cached_corpus())


def test_real_world_units_build_or_are_refused_for_a_documented_reason(corpus, tmp_path):
    rows = []
    for package, package_units in corpus.items():
        systemd_refuses = _referee(package_units)
        for unit, text in package_units.items():
            files = {unit: text, **{c: package_units[c] for c in _companions(unit, text, package_units)}}
            verdict, reason, said = _build(tmp_path / package, unit, files)
            accounts: tuple[str, ...] = ()
            while reason == "account the package does not create" and len(accounts) < 5:
                # the one thing build-deb cannot know: listed in host-accounts, the unit builds
                accounts += tuple(re.findall(r"(?:User|Group|SupplementaryGroups)=(\S+) names", said[0]))
                verdict2, reason2, said2 = _build(tmp_path / package, unit, files, accounts)
                if reason2 != "account the package does not create":
                    assert verdict2 == "built", (unit, said2)
                    break
                said = said2
            rows.append((package, unit, verdict, reason, unit in systemd_refuses, said))

    table = ["| package | unit | build-deb | systemd-analyze verify | warnings |", "|---|---|---|---|---|"]
    for package, unit, verdict, reason, sd_refuses, said in rows:
        ours = f"refused: {reason}" if verdict == "refused" else "builds"
        warned = len(said) if verdict == "built" else ""
        table.append(f"| {package} | {unit} | {ours} | {'refuses' if sd_refuses else 'loads'} | {warned} |")
    counts = Counter(r[3] or "builds" for r in rows)
    print("\n".join(table))
    print(dict(counts))
    for _package, unit, verdict, reason, _sd, said in rows:
        if verdict == "refused" and reason not in SYSTEMD_REFUSES:
            print(f"{unit}: {said[0]}")
        elif verdict == "built":
            print("\n".join(f"{unit}: warning: {w}" for w in said))

    assert len(corpus) >= 30 and len(rows) >= 100
    undocumented = [(u, s) for _p, u, v, r, _sd, s in rows if r == "UNDOCUMENTED"]
    assert not undocumented, undocumented
    # the referee: what systemd refuses is refused; what it loads is refused only for what it cannot see
    for _package, unit, verdict, reason, sd_refuses, said in rows:
        if sd_refuses:
            assert verdict == "refused", f"{unit}: systemd refuses it, build-deb built it"
        else:
            assert reason not in SYSTEMD_REFUSES, f"{unit}: systemd loads it, build-deb said: {said}"
    assert counts["builds"] >= len(rows) // 2, counts
    # a few verdicts that document themselves
    verdicts = {unit: (verdict, reason) for _p, unit, verdict, reason, _sd, _s in rows}
    assert verdicts["ssh.service"] == ("built", "")
    assert verdicts["cron.service"] == ("built", "")
    assert verdicts["redis-server.service"] == ("refused", "account the package does not create")
