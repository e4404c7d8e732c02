#!/usr/bin/env bash
# The demo (`make demo`): build the sample, boot a local Debian 12 guest under
# qemu the way a cloud instance boots, ship to it with `ship`, show the agent's
# health answer and the per-host summary, power the guest off.
# Installs what it needs with apt (qemu, cloud-localds, mmdebstrap) and runs
# tools/setup.sh when ./.venv is missing.  Runs as root (it re-runs itself with
# sudo): the guest image is built with mmdebstrap.  Extra arguments go to
# tools/demo.py (--keep: leave the guest running until Enter).
set -euo pipefail
tools="$(cd "$(dirname "$0")" && pwd)"
cd "$tools/.."

if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=DEBSHIP_CACHE,DEBSHIP_VM_ACCEL,SOURCE_DATE_EPOCH "$tools/demo.sh" "$@"
fi

DEB_PACKAGES=(
    python3 python3-venv ca-certificates openssh-client
    qemu-system-x86 qemu-utils cloud-image-utils   # the guest: qemu, qemu-img, cloud-localds
    mmdebstrap e2fsprogs                           # its image: a Debian root, mkfs.ext4 -d
)
bash tools/ensure-debs.sh "${DEB_PACKAGES[@]}"

if [ ! -x .venv/bin/ship ] || [ ! -x .venv/bin/build-deb ]; then bash tools/setup.sh; fi
exec .venv/bin/python tools/demo.py "$@"
