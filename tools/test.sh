#!/usr/bin/env bash
# Run the whole test suite: install the Debian and Python packages the tests
# need, then pytest with every tool required (nothing is skipped silently).
# The tests mount overlays and chroot into throwaway Debian roots, so this
# runs as root (it re-runs itself with sudo otherwise).  Extra arguments go
# to pytest, e.g. `tools/test.sh -k lifecycle`.
set -euo pipefail
tools="$(cd "$(dirname "$0")" && pwd)"
cd "$tools/.."

if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=DEBSHIP_CACHE,SOURCE_DATE_EPOCH,DEBSHIP_VM_ACCEL "$tools/test.sh" "$@"
fi

DEB_PACKAGES=(
    python3 python3-venv git ca-certificates
    dpkg-dev lintian shellcheck systemd         # readers and linters of what we build
    mmdebstrap                                   # cached throwaway Debian roots
    piuparts                                     # tests/piuparts: Debian's installation tester on the corpus
    openssh-server openssh-client sudo           # the loopback SSH test hosts
    systemd-container                            # systemd-nspawn: hosts where systemd really runs
    qemu-system-x86 qemu-utils cloud-image-utils e2fsprogs   # tests/vm: a qemu guest, its image and seed
    xz-utils zstd util-linux mount
    gnupg                                        # debship publish: signing keys, gpg-agent, gpgv
    python3-stdeb python3-all python3-setuptools dh-python debhelper fakeroot help2man   # make deb-self
    python3-click python3-jinja2 python3-paramiko python3-debian                          # (its man pages)
)
bash tools/ensure-debs.sh "${DEB_PACKAGES[@]}"

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# Lint and formatting first: a finding fails the run before any test starts.
.venv/bin/ruff check .
.venv/bin/ruff format --check .

export DEBSHIP_REQUIRE_ALL=1
exec .venv/bin/python -m pytest -ra "$@"
