#!/usr/bin/python3
"""fleet-agent startup: boot-time preparation.

Run by fleet-agent-startup.service at every boot and by the package's postinst
on install, upgrade and downgrade.  Idempotent: a second run changes nothing
but the deploy log.  Steps, each appended to /var/log/fleet-agent/deploy.log
as a timestamped line:

  1. create /var/lib/fleet-agent and /var/log/fleet-agent if missing
  2. rotate the deploy log when it has grown past rotate_log_kib
  3. read /etc/fleet-agent/startup.conf (missing file: defaults)
  4. create the state sub-folders it names
  5. record the installed version and the boot id in
     /var/lib/fleet-agent/last-startup.json (rewritten only when they change)

Exit 0 and one summary line on stdout on success; exit 1 with a message on
stderr that names the deploy log otherwise.  FLEET_AGENT_ROOT=/some/dir
prefixes every path (tests).  Standard library only.
"""

import configparser
import json
import os
import subprocess
import sys
import time

NAME = "fleet-agent"
ROOT = os.environ.get("FLEET_AGENT_ROOT", "")
CONFIG = ROOT + "/etc/fleet-agent/startup.conf"
STATE_DIR = ROOT + "/var/lib/fleet-agent"
LOG_DIR = ROOT + "/var/log/fleet-agent"
DEPLOY_LOG = LOG_DIR + "/deploy.log"
STATE_FILE = STATE_DIR + "/last-startup.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
DEFAULTS = {"state_subdirs": "", "rotate_log_kib": "1024"}


class StartupError(Exception):
    """A step failed; the message says which and why."""


def installed_version(package=NAME):
    """The installed version as dpkg knows it (the new one, during postinst), or "unknown"."""
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


class DeployLog:
    def __init__(self, version):
        self.prefix = f"{NAME} {version} startup"

    def __call__(self, step, result):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        result = " ".join(str(result).splitlines())  # one line per step
        with open(DEPLOY_LOG, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {self.prefix}: {step}: {result}\n")


def make_dir(path):
    """Create ``path`` (mode 0755) unless it exists; "created" or "exists"."""
    if os.path.isdir(path):
        return "exists"
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as e:
        raise StartupError(f"cannot create {path}: {e.strerror}") from e
    return "created"


def rotate(limit_kib):
    """Move the deploy log to deploy.log.1 once it is bigger than ``limit_kib`` (0: never)."""
    try:
        size = os.path.getsize(DEPLOY_LOG)
    except OSError:
        return "no log yet"
    if limit_kib == 0 or size <= limit_kib * 1024:
        return f"{size} bytes, kept"
    os.replace(DEPLOY_LOG, DEPLOY_LOG + ".1")
    return f"{size} bytes, moved to deploy.log.1"


def read_config():
    """(state sub-folders, rotate limit in KiB, what happened) from startup.conf."""
    parser = configparser.ConfigParser(defaults=DEFAULTS, interpolation=None)
    try:
        found = parser.read(CONFIG, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise StartupError(f"{CONFIG} is not valid INI: {e}") from e
    section = parser["startup"] if parser.has_section("startup") else parser[parser.default_section]
    subdirs = section.get("state_subdirs").split()
    for sub in subdirs:
        if "/" in sub or sub in (".", ".."):
            raise StartupError(f"{CONFIG} [startup] state_subdirs: '{sub}' must be a plain folder name")
    try:
        limit = section.getint("rotate_log_kib")
    except ValueError as e:
        raise StartupError(f"{CONFIG} [startup] rotate_log_kib must be a whole number: {e}") from e
    if limit < 0:
        raise StartupError(f"{CONFIG} [startup] rotate_log_kib must be 0 or more, not {limit}")
    return subdirs, limit, ("read" if found else "not found, using defaults")


def boot_id():
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


def record_state(version):
    """Write the state file atomically, only when its content changes."""
    state = {"name": NAME, "version": version, "boot_id": boot_id()}
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    try:
        with open(STATE_FILE, encoding="utf-8") as f:
            if f.read() == text:
                return "unchanged"
    except OSError:
        pass
    tmp = f"{STATE_FILE}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, STATE_FILE)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise StartupError(f"cannot write {STATE_FILE}: {e.strerror}") from e
    return f"written (version {version}, boot {state['boot_id']})"


def run(version):
    log_dir = make_dir(LOG_DIR)  # first: every later step is logged there
    log = DeployLog(version)
    log(f"create {LOG_DIR}", log_dir)
    log(f"create {STATE_DIR}", make_dir(STATE_DIR))
    step = "read config"
    try:
        subdirs, limit, result = read_config()
        log(f"read {CONFIG}", result)
        log("rotate deploy log", rotate(limit))
        for sub in subdirs:
            step = f"create {STATE_DIR}/{sub}"
            log(step, make_dir(f"{STATE_DIR}/{sub}"))
        step = "record state"
        log(f"record {STATE_FILE}", record_state(version))
    except StartupError as e:
        log(step, f"FAILED: {e}")
        raise
    log("done", "ok")


def main():
    version = installed_version()
    try:
        run(version)
    except (StartupError, OSError) as e:
        print(f"{NAME} startup: error: {e}; see {DEPLOY_LOG}", file=sys.stderr)
        return 1
    print(f"{NAME} startup: ok (version {version}, boot {boot_id()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
