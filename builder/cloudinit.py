"""cloud-init user-data that makes a new instance install packages from a debship repository.

The output is a ``#cloud-config`` document for cloud-init's ``apt`` module
(``apt: sources:`` with the repository's armored key under ``key:`` and
``signed-by=$KEY_FILE``, so the key trusts this one source and nothing else)
and its ``packages`` module (``package_update: true`` first, so apt sees the
new source).  cloud-init turns the key into a keyring under
``/etc/apt/cloud-init.gpg.d/`` with ``gpg --dearmor``: the image needs gpg.
Every scalar is written as a JSON string, which YAML reads as the same string.
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


APPLY_KEY = "/etc/debship/{name}-archive.asc"
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
) -> str:
    """The ``#cloud-config`` text (``key`` is the armored public key).

    ``apply``: the packages are not installed by cloud-init's package module but by
    ``debship apply NAME=VERSION --repo …`` from ``runcmd`` (python3-debship is installed
    from the repository first), so a new instance gets debship's checks, automatic
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
    files = []
    if trust_key is not None:  # pkgsig.TrustedKey: later ships install only packages it signed
        from .pkgsig import KEYS_DIR

        files += [
            f"  - path: {q(f'{KEYS_DIR}/{trust_key.filename}')}",
            "    encoding: b64",
            "    owner: root:root",
            '    permissions: "0644"',
            f"    content: {base64.b64encode(trust_key.data).decode()}",
        ]
    if follow:
        versioned = [f"{n}={v}" for n, v in packages if v]
        if versioned or not packages:
            raise RepoError(
                f"--follow takes --package NAME without a version ({', '.join(versioned) or 'none given'}): "
                "the repository's phased rollout picks the version"
            )
        key_file = APPLY_KEY.format(name=name)
        files += [
            f"  - path: {q(key_file)}",
            '    permissions: "0644"',
            "    content: |",
            *[f"      {line}".rstrip() for line in key.strip().splitlines()],
        ]
        units = "/etc/systemd/system/"
        for path, text in (
            (units + f"{FOLLOW_UNIT}.service", FOLLOW_SERVICE),
            (units + f"{FOLLOW_UNIT}.timer", FOLLOW_TIMER),
            (PHASING_CONF, PHASING_TEXT),
        ):
            files += [
                f"  - path: {q(path)}",
                '    permissions: "0644"',
                "    content: |",
                *[f"      {line}".rstrip() for line in text.strip().splitlines()],
            ]
        lines += ["packages:", f"  - {q('python3-debship')}", "write_files:", *files, "runcmd:"]
        where = ["--repo", url, "--repo-key", key_file, "--suite", suite, "--component", component]
        for n, _ in packages:
            lines.append(f"  - {json.dumps(['debship', 'apply', '--follow', n, *where])}")
            lines.append(f"  - {json.dumps(['systemctl', 'enable', '--now', f'{FOLLOW_UNIT}{n}.timer'])}")
        return "\n".join(lines) + "\n"
    if apply:
        unversioned = [n for n, v in packages if not v]
        if unversioned or not packages:
            listed = ", ".join(unversioned) or "none given"
            raise RepoError(
                f"--apply needs NAME=VERSION for each --package ({listed}): debship apply installs one exact version"
            )
        key_file = APPLY_KEY.format(name=name)
        files += [
            f"  - path: {q(key_file)}",
            '    permissions: "0644"',
            "    content: |",
            *[f"      {line}".rstrip() for line in key.strip().splitlines()],
        ]
        lines += ["packages:", f"  - {q('python3-debship')}", "write_files:", *files, "runcmd:"]
        where = ["--repo", url, "--repo-key", key_file, "--suite", suite, "--component", component]
        lines += [f"  - {json.dumps(['debship', 'apply', f'{n}={v}', *where])}" for n, v in packages]
        return "\n".join(lines) + "\n"
    if files:
        lines += ["write_files:", *files]
    if packages:
        lines.append("packages:")
        lines += [f"  - [{q(n)}, {q(v)}]" if v else f"  - {q(n)}" for n, v in packages]
    return "\n".join(lines) + "\n"
