"""Real-world systemd units from Debian packages, for the unit-corpus tier.

``cached_corpus()`` runs ``apt-get download`` for ``PACKAGES`` (the build
machine's apt sources: Debian 12 on CI), takes every unit file out of each .deb
with ``dpkg-deb --fsys-tarfile`` and keeps only those, under
``$DEBSHIP_CACHE/unit-corpus/<key>/<package>/<unit>`` (default
``~/.cache/debship``), keyed by the package list and the Debian release.  The
.debs are deleted; a second run downloads nothing.  Nothing is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from hostlab.rootfs import cache_dir

# Packages of Debian 12 that ship systemd units, chosen for their variety: sockets with Accept=yes,
# templates, timers, path units, oneshots, forking daemons, hardening, users of their own, deprecated
# settings.  Left out for their size only: docker.io (36 MB) and containerd (26 MB).
PACKAGES = (
    "anacron",
    "apache2",
    "apt",
    "avahi-daemon",
    "bind9",
    "chrony",
    "cron",
    "cups-daemon",
    "dbus",
    "dnsmasq",
    "dovecot-core",
    "e2fsprogs",
    "exim4-base",
    "fail2ban",
    "haproxy",
    "lighttpd",
    "logrotate",
    "lvm2",
    "man-db",
    "mariadb-server",
    "mdadm",
    "memcached",
    "nfs-kernel-server",
    "nftables",
    "nginx-common",
    "ntpsec",
    "openssh-server",
    "openvpn",
    "postfix",
    "postgresql-common",
    "prometheus-node-exporter",
    "redis-server",
    "rsync",
    "rsyslog",
    "samba",
    "smartmontools",
    "squid",
    "sysstat",
    "tor",
    "unattended-upgrades",
    "unbound",
    "util-linux",
    "wireguard-tools",
)
UNIT_DIRS = ("./lib/systemd/system/", "./usr/lib/systemd/system/")
_LAYOUT = "1"


def _release() -> str:
    try:
        return Path("/etc/debian_version").read_text().strip().split(".")[0]
    except OSError:
        return "unknown"


def corpus_key(packages: tuple[str, ...] = PACKAGES) -> str:
    text = "\n".join([_LAYOUT, _release(), *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_corpus(packages: tuple[str, ...] = PACKAGES) -> Path:
    """The folder of ``<package>/<unit>`` files (and versions.json), downloaded when absent."""
    final = cache_dir() / "unit-corpus" / corpus_key(packages)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        debs, units = work / "debs", work / "units"
        debs.mkdir()
        units.mkdir()
        proc = _download(packages, debs)
        if proc.returncode != 0 and os.geteuid() == 0:  # lists missing or stale: refresh them once
            subprocess.run(["apt-get", "update", "-qq"], check=False, stdin=subprocess.DEVNULL, capture_output=True)
            proc = _download(packages, debs)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("E:")]
            raise RuntimeError(
                f"apt-get download failed ({'; '.join(errors[-3:])}); run apt-get update "
                "(the corpus comes from the build machine's Debian 12 sources)"
            )
        versions = {}
        for deb in sorted(debs.glob("*.deb")):
            package, version = deb.name.split("_")[:2]
            versions[package] = version.replace("%3a", ":")
            _extract_units(deb, units / package)
        (units / "versions.json").write_text(json.dumps(versions, indent=1, sort_keys=True) + "\n")
        os.replace(units, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _download(packages: tuple[str, ...], folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["apt-get", "download", "-q", *sorted(packages)],
        cwd=folder,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _extract_units(deb: Path, dest: Path) -> None:
    """The regular files at the top of the unit folders (no drop-ins, no alias links)."""
    dest.mkdir()
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                folder = next((d for d in UNIT_DIRS if member.name.startswith(d)), None)
                if folder is None or not member.isfile() or "/" in member.name[len(folder) :]:
                    continue
                data = tar.extractfile(member)
                if data is not None:
                    (dest / member.name[len(folder) :]).write_bytes(data.read())
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise RuntimeError(f"dpkg-deb --fsys-tarfile {deb} failed")


def corpus_units(folder: Path) -> dict[str, dict[str, bytes]]:
    """package -> {unit name: bytes}."""
    return {
        p.name: {u.name: u.read_bytes() for u in sorted(p.iterdir())} for p in sorted(folder.iterdir()) if p.is_dir()
    }
