"""Security tier: a local user without sudo on a shipped-to host (``mallory``, made in the
loopback host's root) plants symlinks and files where ship writes as root; nothing of theirs
is followed, no root-owned file changes, and a package with an admitted secret leaves no
copy of it that mallory can read.

Why these tests prove debship's checks and not the kernel's: fs.protected_symlinks only stops
root from following a symlink in a sticky world-writable folder (/run/lock, /var/tmp, /tmp);
the store and lock folders and the staging folder planted here are not such folders, so the
kernel never protects them; the /run/lock case passes because ship no longer opens anything
there, and the sticky log folder is refused by ship's check before anything opens a file in it.  On this machine (fs.protected_symlinks=0) the tests fail against the code
before these checks (all of them: blocked by the held lock, writing through the planted links,
or keeping a symlinked upload).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.cli import ship
from builder.ship import commands
from tests.harness.helpers import cli_runner
from tests.harness.project import copy_sample

pytestmark = pytest.mark.root

PKG = "fleet-agent"
STORE = f"var/lib/debship/{PKG}"
SECRET = "DEBSHIP-TEST-SECRET-7f3a9c"
KEY = f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"


def with_secret(project: Path) -> Path:
    """The sample bundle plus configs/tls/server.key, admitted with allow-secrets."""
    (project / "configs" / "tls").mkdir()
    (project / "configs" / "tls" / "server.key").write_text(KEY)
    py = project / "pyproject.toml"
    py.write_text(
        py.read_text().replace("[tool.debship]\n", '[tool.debship]\nallow-secrets = ["configs/tls/server.key"]\n', 1)
    )
    return project


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sec-debs")
    project = with_secret(copy_sample(base / "project"))
    return {
        "v1": build_deb(project, base / "v1", version="1.0.0").path,
        "v2": build_deb(project, base / "v2", version="1.1.0").path,
    }


def run_ship(host, deb: Path | None, *args: str):
    argv = ([str(deb)] if deb else []) + ["--host", host.address, *host.ship_args(), "--connect-timeout", "30", *args]
    return cli_runner().invoke(ship, argv, env={"SSH_AUTH_SOCK": ""})


def add_mallory(host) -> None:
    host.run_root(["useradd", "-m", "-s", "/bin/sh", "mallory"])


def as_mallory(host, script: str, check: bool = True):
    return host.run_root(["runuser", "-u", "mallory", "--", "sh", "-c", script], check=check)


def sentinel(host, rel: str, text: str = "root's file, untouched\n", mode: int = 0o644) -> Path:
    path = host.root.path / rel
    path.write_text(text)
    path.chmod(mode)
    return path


def snapshot(path: Path) -> tuple:
    st = os.lstat(path)
    return path.read_bytes(), st.st_mode, st.st_uid, st.st_gid


def installed(host) -> str:
    r = host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", PKG], check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def test_planted_symlinks_and_a_held_lock_in_run_lock_and_var_tmp_are_ignored(ssh_host, debs):
    add_mallory(ssh_host)
    targets = {n: sentinel(ssh_host, f"etc/sentinel-{n}") for n in ("lock", "holder", "staging")}
    before = {n: snapshot(p) for n, p in targets.items()}
    # What earlier debship versions used: world-writable /run/lock, and /var/tmp staging names.
    as_mallory(
        ssh_host,
        f"ln -s /etc/sentinel-lock /run/lock/debship-{PKG}.lock && "
        f"ln -s /etc/sentinel-holder /run/lock/debship-{PKG}.holder && "
        f"ln -s /etc/sentinel-staging /var/tmp/debship-{PKG}.AAAAAAAA && "
        f"mkdir /var/tmp/debship-{PKG}.BBBBBBBB && echo mine > /var/tmp/debship-{PKG}.BBBBBBBB/f",
    )
    # mallory holds a lock on the old lock path for good (it would have blocked every ship)
    holder = subprocess.Popen(
        [
            "chroot",
            str(ssh_host.root.path),
            "runuser",
            "-u",
            "mallory",
            "--",
            "flock",
            f"/run/lock/debship-{PKG}.lock",
            "sleep",
            "600",
        ],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        r = run_ship(ssh_host, debs["v1"], "--lock-timeout", "5")
        assert r.exit_code == 0, r.output + r.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert installed(ssh_host) == "ii 1.0.0"
    assert {n: snapshot(p) for n, p in targets.items()} == before
    assert (ssh_host.root.path / f"var/tmp/debship-{PKG}.BBBBBBBB/f").read_text() == "mine\n"  # not removed
    assert (ssh_host.root.path / f"var/tmp/debship-{PKG}.AAAAAAAA").is_symlink()
    lock_dir = os.lstat(ssh_host.root.path / "run/debship")
    assert (lock_dir.st_uid, lock_dir.st_mode & 0o7777) == (0, 0o700)
    assert "shipping fleet-agent 1.0.0" in (ssh_host.root.path / f"run/debship/{PKG}.holder").read_text()


def test_a_stale_lock_file_does_not_block_and_a_held_one_is_named_with_its_owner(ssh_host, debs):
    lock = ssh_host.root.path / f"run/debship/{PKG}.lock"
    lock.parent.mkdir(mode=0o700)
    lock.write_text("")  # left by a ship whose host lost power: nobody holds it
    r = run_ship(ssh_host, debs["v1"], "--lock-timeout", "1")
    assert r.exit_code == 0, r.output + r.stderr
    stuck = subprocess.Popen(
        ["chroot", str(ssh_host.root.path), "flock", f"/run/debship/{PKG}.lock", "sleep", "600"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        r = run_ship(ssh_host, debs["v2"], "--lock-timeout", "1")
    finally:
        os.killpg(stuck.pid, signal.SIGKILL)
        stuck.wait()
    assert r.exit_code == 1
    assert f"lock file /run/debship/{PKG}.lock, owned by root" in r.stderr
    assert installed(ssh_host) == "ii 1.0.0"


# (what a mistake or an older tool left, set up as root; what mallory then plants; the path named)
UNSAFE_SETUPS = {
    "store is a symlink to mallory's folder": (
        f"mkdir -p /var/lib/debship && ln -s /home/mallory/store /{STORE}",
        "mkdir /home/mallory/store && ln -s /etc/sentinel /home/mallory/store/fleet-agent_1.0.0_all.deb",
        f"/{STORE} is not a folder (it is a symbolic link owned by root)",
    ),
    "store owned by mallory": (
        f"mkdir -p /{STORE} && chown mallory /{STORE}",
        f"ln -s /etc/sentinel /{STORE}/Packages.new && ln -s /etc/sentinel /{STORE}/last-install.log",
        f"/{STORE} is not owned by root (it is a directory owned by mallory)",
    ),
    "lock folder owned by mallory": (
        "mkdir -m 0777 /run/debship && chown mallory /run/debship",
        f"ln -s /etc/sentinel /run/debship/{PKG}.holder.new",
        "/run/debship is not owned by root (it is a directory owned by mallory)",
    ),
    "log folder writable by everyone": (
        f"mkdir -m 1777 /var/log/{PKG}",
        f"ln -s /etc/sentinel /var/log/{PKG}/deploy.log",
        f"/var/log/{PKG} is writable by others than root (it is a directory owned by root)",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_SETUPS))
def test_an_unsafe_store_lock_or_log_folder_stops_the_ship_before_anything_is_written(ssh_host, debs, case):
    setup, plant, named = UNSAFE_SETUPS[case]
    add_mallory(ssh_host)
    target = sentinel(ssh_host, "etc/sentinel")
    before = snapshot(target)
    ssh_host.run_root(["sh", "-c", setup])
    as_mallory(ssh_host, plant)
    r = run_ship(ssh_host, debs["v1"])
    assert r.exit_code == 1
    assert f"unsafe path on the host: {named}" in r.stderr, r.output + r.stderr
    assert "remove it" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(target) == before
    assert installed(ssh_host) == ""


def test_a_staged_upload_swapped_for_a_symlink_is_not_kept(ssh_host, debs):
    """The store copy is made from a regular file only, then checked in root's hands: a staged
    file replaced by a symlink to a root-only file (whose digest is claimed) is refused."""
    shadow = sentinel(ssh_host, "etc/root-only", "root's eyes only\n", 0o600)
    import hashlib

    digest = hashlib.sha256(shadow.read_bytes()).hexdigest()
    stored = f"/{STORE}/fleet-agent_9.9.9_all.deb"
    with ssh_host.connect() as conn:
        staging = conn.run(commands.stage(PKG, "ops"), sudo=True).stdout.strip()
        st = os.lstat(ssh_host.root.path / staging[1:])
        assert st.st_mode & 0o7777 == 0o700 and st.st_uid != 0  # the login user's alone
        conn.run(["ln", "-s", "/etc/root-only", f"{staging}/x.deb"])
        r = conn.run(commands.check_and_keep(staging, f"{staging}/x.deb", stored, digest, "ops"), sudo=True)
    assert r.exit_code == 77 and f"{staging}/x.deb\tsymbolic link\tops\tis not a regular file" in r.stdout
    assert not (ssh_host.root.path / stored[1:]).exists()


def test_store_and_logs_are_root_only_and_no_readable_file_holds_the_secret(ssh_host, debs):
    r = run_ship(ssh_host, debs["v1"])
    assert r.exit_code == 0, r.output + r.stderr
    p = ssh_host.root.path
    # a host shipped to by an earlier debship: everything world-readable
    for rel in (f"{STORE}/fleet-agent_1.0.0_all.deb", f"{STORE}/last-install.log", f"var/log/{PKG}/deploy.log"):
        (p / rel).chmod(0o644)
    add_mallory(ssh_host)
    r = run_ship(ssh_host, debs["v2"])
    assert r.exit_code == 0, r.output + r.stderr

    def mode(rel: str) -> tuple[int, str]:
        st = os.lstat(p / rel)
        return st.st_mode & 0o7777, {0: "root", 4: "adm"}.get(st.st_gid, str(st.st_gid))

    for deb in ("fleet-agent_1.0.0_all.deb", "fleet-agent_1.1.0_all.deb"):
        assert mode(f"{STORE}/{deb}") == (0o600, "root")
    assert mode(f"{STORE}/last-install.log") == (0o640, "adm")
    assert mode(f"var/log/{PKG}/deploy.log") == (0o640, "adm")
    assert mode(f"etc/{PKG}/tls/server.key") == (0o600, "root")
    assert not list((p / "var/tmp").glob("debship-*"))

    # mallory reads every file they can (unpacking every readable .deb) and finds no copy of the secret
    scan = as_mallory(
        ssh_host,
        r"""
        cd /tmp && found=$(grep -rlsF "$0" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev)
        debs=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name '*.deb' -type f -readable -print 2>/dev/null)
        for d in $debs; do
            x=$(mktemp -d) && dpkg-deb -x "$d" "$x" 2>/dev/null && dpkg-deb -e "$d" "$x/DEBIAN" 2>/dev/null
            if grep -rqsF "$0" "$x"; then found="$found $d"; fi
            rm -rf "$x"
        done
        echo "debs: $(echo $debs | wc -w)"; echo "found: $found"
    """.replace("$0", SECRET),
        check=False,
    )
    assert "found: \n" in scan.stdout or scan.stdout.rstrip().endswith("found:"), scan.stdout + scan.stderr
    # ... while root does find it in the kept packages (the scan would have seen it)
    root_scan = ssh_host.run_root(
        ["sh", "-c", f"dpkg-deb --fsys-tarfile /{STORE}/fleet-agent_1.1.0_all.deb | tar -xO ./etc/{PKG}/tls/server.key"]
    )
    assert SECRET in root_scan.stdout
