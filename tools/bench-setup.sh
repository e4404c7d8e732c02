#!/usr/bin/env bash
# The rival tools for bench/ship.py, from PyPI into ./.venv-bench (gitignored):
# ansible-core and pyinfra, pinned so that figures can be compared between runs.
#   bash tools/bench-setup.sh        # then: sudo .venv/bin/python bench/ship.py
set -euo pipefail
cd "$(dirname "$0")/.."
ANSIBLE_CORE=${ANSIBLE_CORE:-2.19.14}   # the newest that runs on Python 3.11 (2.20 needs 3.12)
PYINFRA=${PYINFRA:-3.10.0}
[ -x .venv-bench/bin/python ] || python3 -m venv .venv-bench
.venv-bench/bin/pip install -q "ansible-core==$ANSIBLE_CORE" "pyinfra==$PYINFRA"
.venv-bench/bin/ansible-playbook --version | head -1
.venv-bench/bin/pyinfra --version
