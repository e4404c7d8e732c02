#!/usr/bin/env bash
# Install debship into ./.venv and build the sample bundle into ./dist/.
# For a fresh Debian 12 / Ubuntu 22.04+ machine; asks for sudo only to apt-get
# install python3-venv when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
deb=$(.venv/bin/build-deb --out dist | tail -n 1)
cat <<EOF
debship is installed in ./.venv: debship, build-deb and ship are in .venv/bin.
The sample package is built: $deb

Next:
  source .venv/bin/activate
  debship ship $deb --host USER@HOST   # install it on a Debian/Ubuntu host over SSH
  debship init ../your-project          # or start your own (README.md, Quickstart)
  bash tools/test.sh                    # the test suite (as root; installs what it needs)
EOF
