"""What a host looks like after a fault: the checks every fault test ends with.

debship's promise is that whatever fails mid-ship, the host ends on a version the
operator can name, fully configured, with nothing half-written left behind.
These helpers read that state as root on the host (``host.run_root(argv,
check=False)``: both ``SSHHost`` and ``NspawnHost`` have it), never over ship's
own code paths, so a test does not trust what it checks::

    version = assert_known_state(host, "fleet-agent", versions={"1.0.0", "1.1.0"})

Service checks (``assert_active``) need systemd: booted hosts only.
"""

from __future__ import annotations

from builder.layout import Layout


def _out(host, argv: list[str]) -> tuple[int, str]:
    r = host.run_root(argv, check=False)
    return r.returncode, (r.stdout or "") + (r.stderr or "")


def dpkg_state(host, name: str) -> tuple[str, str]:
    """(``db:Status-Abbrev`` stripped, version) of ``name``; ("", "") when dpkg does not know it."""
    rc, out = _out(host, ["dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Version}\n", name])
    if rc != 0 or "\t" not in out:
        return "", ""
    abbrev, _, version = out.splitlines()[0].partition("\t")
    return abbrev.strip(), version.strip()


def dpkg_audit(host) -> str:
    """What ``dpkg --audit`` reports (empty: no package is half-installed or half-configured)."""
    return _out(host, ["dpkg", "--audit"])[1].strip()


def staging_left(host, name: str) -> list[str]:
    """Upload staging folders of ``name`` left in /var/tmp."""
    _, out = _out(host, ["sh", "-c", 'ls -d /var/tmp/debship-"$1".* 2>/dev/null || true', "sh", name])
    return sorted(out.split())


def store_mismatch(host, name: str) -> str:
    """ "" when the store's Packages index lists exactly the .debs in the store folder, else what differs."""
    folder = Layout(name).store
    _, ls = _out(
        host,
        ["sh", "-c", 'cd "$1" 2>/dev/null && for f in *.deb; do [ -f "$f" ] && echo "$f"; done; true', "sh", folder],
    )
    files = set(ls.split())
    rc, index = _out(host, ["cat", f"{folder}/Packages"])
    if rc != 0:
        return f"{folder}/Packages missing" if files else ""
    listed = {
        line.split(":", 1)[1].strip().removeprefix("./") for line in index.splitlines() if line.startswith("Filename:")
    }
    if listed == files:
        return ""
    return f"{folder}: .debs {sorted(files)} but Packages lists {sorted(listed)}"


def assert_known_state(host, name: str, versions: set[str] | None = None) -> str:
    """Assert ``name`` is installed and fully configured (``ii``, ``dpkg --audit`` empty, one of
    ``versions`` if given), no staging left, the store's index matching its files; return the version."""
    abbrev, version = dpkg_state(host, name)
    audit = dpkg_audit(host)
    assert abbrev == "ii", f"{name} is {abbrev or 'not installed'!r} {version}; dpkg --audit: {audit}"
    assert audit == "", f"dpkg --audit is not empty:\n{audit}"
    if versions is not None:
        assert version in versions, f"{name} is at {version}, expected one of {sorted(versions)}"
    assert staging_left(host, name) == [], f"staging left behind: {staging_left(host, name)}"
    mismatch = store_mismatch(host, name)
    assert mismatch == "", mismatch
    return version


def unit_state(host, unit: str) -> str:
    """``systemctl is-active`` of ``unit`` (booted hosts)."""
    return _out(host, ["systemctl", "is-active", unit])[1].strip()


def assert_active(host, *units: str) -> None:
    """Every one of ``units`` is active (booted hosts), with its journal's tail when not."""
    for unit in units:
        state = unit_state(host, unit)
        if state != "active":
            _, journal = _out(host, ["journalctl", "--no-pager", "-n", "30", "-u", unit])
            raise AssertionError(f"{unit} is {state!r}, not active; journal:\n{journal}")


def deploy_log(host, name: str) -> str:
    """The package's deploy log (maintainer scripts and ship write it), "" when absent."""
    rc, out = _out(host, ["cat", Layout(name).deploy_log])
    return out if rc == 0 else ""


# apt's and dpkg's own bookkeeping changes with every operation; it is not the package's.
BOOKKEEPING = (
    "var/cache/",
    "var/lib/apt/",
    "var/log/apt/",
    "var/lib/dpkg/",
    "var/log/dpkg.log",
    "var/log/alternatives.log",
)


def purge(host, name: str = "fleet-agent") -> str:
    """``apt-get purge name`` on the host as root, as an admin runs it; its output (asserts it succeeded)."""
    argv = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", name]
    rc, out = _out(host, argv)
    assert rc == 0, out
    return out


def leftovers(host, before: set[str], skip: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(paths gone, paths new) of the host's root against ``before`` (``Root.files()``), apt's and
    dpkg's bookkeeping and the ``skip`` prefixes aside: ([], []) once a purge removed all it should."""
    after = host.root.files()
    ignore = BOOKKEEPING + skip
    return (
        sorted(f for f in before - after if not f.startswith(ignore)),
        sorted(f for f in after - before if not f.startswith(ignore)),
    )
