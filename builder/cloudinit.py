"""cloud-init user-data that makes a new instance install packages from a debship repository.

The output is a ``#cloud-config`` document for cloud-init's ``apt`` module
(``apt: sources:`` with the repository's armored key under ``key:`` and
``signed-by=$KEY_FILE``, so the key trusts this one source and nothing else)
and its ``packages`` module (``package_update: true`` first, so apt sees the
new source).  cloud-init turns the key into a keyring under
``/etc/apt/cloud-init.gpg.d/`` with ``gpg --dearmor``: the image needs gpg.
Every scalar is written as a JSON string, which YAML reads as the same string.

``--apply`` (``_apply_user_data``) writes debship's own source instead and installs the package
with ``debship apply`` from ``runcmd``: cloud-init's scripts module fails when apply exits non-zero,
so a failed health check ends cloud-init in ``error`` (tested on a booted container in
tests/system/test_first_boot_apply.py).
"""

from __future__ import annotations

import base64
import json
import re

from .config import NAME_RE, REPO_URL_RE
from .errors import RepoError
from .version import validate

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_package(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME=VERSION`` (a Debian version, as apt-get install takes it)."""
    name, sep, version = spec.partition("=")
    if not NAME_RE.match(name):
        raise RepoError(f"--package {spec!r}: {name!r} is not a Debian package name; use NAME or NAME=VERSION")
    if sep:
        validate(version)
    return name, (version if sep else None)


FOLLOW_UNIT = "debship-follow@"
# apt 2.6 phases only in its upgrade calculation unless this is set; with it the candidate itself
# is phased, so unattended-upgrades and `apt-get install NAME` honour the phase too (docs/rollouts.md).
PHASING_CONF = "/etc/apt/apt.conf.d/50debship-phasing"
PHASING_TEXT = 'APT::Get::Phase-Policy "true";\n'

# apply --follow NAME every 15 minutes (a random 5 minutes apart, so that a fleet does not fetch at
# once), the first time 2 minutes after boot; change it with a drop-in (systemctl edit).
FOLLOW_SERVICE = """[Unit]
Description=debship: take the version of %i the repository's phased rollout offers this machine
Wants=network-online.target
After=network-online.target
# Purge of the package removes its source: the runs are skipped from then on, not failed.
ConditionPathExists=/etc/apt/sources.list.d/debship-%i.sources

[Service]
Type=oneshot
ExecStart=/usr/bin/debship apply --follow %i
"""
FOLLOW_TIMER = """[Unit]
Description=debship: follow the repository's phased rollout of %i

[Timer]
OnBootSec=2min
OnUnitActiveSec=15min
RandomizedDelaySec=5min

[Install]
WantedBy=timers.target
"""


def user_data(
    url: str,
    key: str,
    packages: list[tuple[str, str | None]],
    suite: str = "stable",
    component: str = "main",
    name: str = "debship",
    apply: bool = False,
    trust_key=None,
    follow: bool = False,
    start_timeout: float | None = None,
) -> str:
    """The ``#cloud-config`` text (``key`` is the armored public key).

    ``apply``: the one package is not installed by cloud-init's package module but by
    ``debship apply NAME=VERSION --repo …`` from ``runcmd`` (python3-debship is installed
    from the repository first; ``start_timeout`` is apply's ``--start-timeout``), so a new instance gets debship's checks, automatic
    rollback, record and pin at first boot, and a failed check ends cloud-init in error.
    ``follow``: each package (NAME, no version: the repository's phased rollout picks it) is
    installed by ``debship apply --follow NAME --repo …`` and followed from then on by the timer
    ``debship-follow@NAME.timer`` (written here): the host follows the repository, unpinned;
    ``PHASING_CONF`` makes apt phase the candidate itself, for unattended-upgrades too.
    ``trust_key`` (a ``pkgsig.TrustedKey``): the host installs only packages it signed."""
    if not REPO_URL_RE.match(url):
        raise RepoError(
            f"--repo {url!r} is not an http(s):// or file:// URL without spaces; "
            "give the URL instances reach the repository at"
        )
    if not _SOURCE_NAME.match(name):
        raise RepoError(f"source name {name!r} is not a plain name (letters, digits, . _ -); choose another")
    for what, value in (("suite", suite), ("component", component)):
        if not _SOURCE_NAME.match(value):
            raise RepoError(f"{what} {value!r} is not a plain name (letters, digits, . _ -); choose another")
    q = json.dumps
    if apply or follow:
        return _apply_user_data(url, key, packages, suite, component, trust_key, start_timeout, follow)
    lines = [
        "#cloud-config",
        f"# apt source {name}: {url} {suite} {component}, signed; written by debship cloud-init",
        "package_update: true",
        "apt:",
        "  preserve_sources_list: true",
        "  sources:",
        f"    {q(name + '.list')}:",
        f"      source: {q(f'deb [signed-by=$KEY_FILE] {url} {suite} {component}')}",
        "      key: |",
        *[f"        {line}".rstrip() for line in key.strip().splitlines()],
    ]
    files = _trust_files(trust_key)
    if files:
        lines += ["write_files:", *files]
    if packages:
        lines.append("packages:")
        lines += [f"  - [{q(n)}, {q(v)}]" if v else f"  - {q(n)}" for n, v in packages]
    return "\n".join(lines) + "\n"


def _trust_files(trust_key) -> list[str]:
    """write_files entries for a ``pkgsig.TrustedKey``: later ships install only packages it signed."""
    if trust_key is None:
        return []
    from .pkgsig import KEYS_DIR

    q = json.dumps
    return [
        f"  - path: {q(f'{KEYS_DIR}/{trust_key.filename}')}",
        "    encoding: b64",
        "    owner: root:root",
        '    permissions: "0644"',
        f"    content: {base64.b64encode(trust_key.data).decode()}",
    ]


def _apply_user_data(url, key, packages, suite, component, trust_key, start_timeout, follow=False) -> str:
    """--apply and --follow: the repository's source is debship's own (the key and deb822 source
    ``ship --via-repo`` and ``apply --repo`` write, ``Layout(name).repo_keyring`` and
    ``.repo_source``), written by write_files before cloud-init's package module runs.  Not
    cloud-init's ``apt: sources:``: apt refuses two sources of one repository with different
    ``Signed-By`` and then reads no source at all, so apply's own source would clash with it.  One
    package: debship keeps one source per package, and two of them for one repository clash in the
    same way.  --follow adds the timer's units and the phasing setting, and enables the timer
    after the first ``apply --follow``."""
    from .layout import Layout
    from .repo import sources_deb822

    mode = "--follow" if follow else "--apply"
    if follow:
        versioned = [f"{n}={v}" for n, v in packages if v]
        if versioned or not packages:
            raise RepoError(
                f"--follow takes --package NAME without a version ({', '.join(versioned) or 'none given'}): "
                "the repository's phased rollout picks the version"
            )
    else:
        unversioned = [n for n, v in packages if not v]
        if unversioned or not packages:
            listed = ", ".join(unversioned) or "none given"
            raise RepoError(
                f"--apply needs NAME=VERSION for each --package ({listed}): debship apply installs one exact version"
            )
    if len(packages) > 1:
        raise RepoError(
            f"{mode} takes one --package ({len(packages)} given): debship keeps one apt source per package and "
            "apt refuses two sources of one repository with different keys; give one, and ship the others "
            "as .deb files (ship without --via-repo, or debship apply FILE.deb)"
        )
    ((pkg, version),) = packages
    lay = Layout(pkg)
    q = json.dumps
    source = sources_deb822(url, suite, component, lay.repo_keyring, f"debship-{pkg}")
    what = f"{pkg}, following the repository's phased rollout," if follow else f"{pkg} {version}"
    lines = [
        "#cloud-config",
        f"# {what} through debship apply, from {url} {suite} {component} (signed); written by debship cloud-init",
        "package_update: true",
        "packages:",
        f"  - {q('python3-debship')}",
        "write_files:",
        *_trust_files(trust_key),
    ]
    files = [(lay.repo_keyring, key.strip() + "\n"), (lay.repo_source, source)]
    if follow:
        units = "/etc/systemd/system/"
        files += [
            (units + f"{FOLLOW_UNIT}.service", FOLLOW_SERVICE),
            (units + f"{FOLLOW_UNIT}.timer", FOLLOW_TIMER),
            (PHASING_CONF, PHASING_TEXT),
        ]
    for path, text in files:
        lines += [f"  - path: {q(path)}", '    permissions: "0644"', "    content: |"]
        lines += [f"      {line}".rstrip() for line in text.splitlines()]
    where = ["--repo", url, "--repo-key", lay.repo_keyring, "--suite", suite, "--component", component]
    if start_timeout is not None:
        where += ["--start-timeout", f"{start_timeout:g}"]
    if follow:
        lines += [
            "runcmd:",
            f"  - {q(['debship', 'apply', '--follow', pkg, *where])}",
            f"  - {q(['systemctl', 'enable', '--now', f'{FOLLOW_UNIT}{pkg}.timer'])}",
        ]
    else:
        lines += ["runcmd:", f"  - {q(['debship', 'apply', f'{pkg}={version}', *where])}"]
    return "\n".join(lines) + "\n"
