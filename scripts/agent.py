#!/usr/bin/python3
"""fleet-agent: a small HTTP health endpoint on 127.0.0.1.

GET /healthz answers 200 with JSON such as
    {"status": "ok", "name": "fleet-agent", "version": "1.2.0", "pid": 812,
     "uptime_seconds": 42, "startup": {"version": "1.2.0", "boot_id": "..."}}
where "version" is the installed package version (read once at start: the
unit is restarted on upgrade) and "startup" is what startup.py last recorded
(null if it has not run).  Every other path is 404.

Settings come from /etc/fleet-agent/agent.conf (INI); --config PATH or the
FLEET_AGENT_CONFIG environment variable point elsewhere (tests).  A missing
file means defaults.  Logs go to stderr, which systemd sends to the journal.
Standard library only: the host has python3 and nothing else.
"""

import argparse
import configparser
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "fleet-agent"
DEFAULT_CONFIG = "/etc/fleet-agent/agent.conf"
DEFAULTS = {"port": "8787", "log_requests": "no", "state_file": "/var/lib/fleet-agent/last-startup.json"}
ADDRESS = "127.0.0.1"  # loopback only: the endpoint is for local health checks


def log(message):
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)


def installed_version(package=NAME):
    """The installed version as dpkg knows it, or "unknown" (not installed, no dpkg)."""
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


def load_settings(path):
    """The [agent] section of ``path`` over the defaults; raises ValueError with a clear message."""
    parser = configparser.ConfigParser(defaults=DEFAULTS, interpolation=None)
    try:
        found = parser.read(path, encoding="utf-8")
    except configparser.Error as e:
        raise ValueError(f"{path}: not valid INI ({e})") from e
    if not found:
        log(f"{path} not found; using defaults")
    section = parser["agent"] if parser.has_section("agent") else parser[parser.default_section]
    try:
        port = section.getint("port")
        log_requests = section.getboolean("log_requests")
    except ValueError as e:
        raise ValueError(f"{path} [agent]: {e}; port is a number, log_requests is yes or no") from e
    if not 0 <= port <= 65535:
        raise ValueError(f"{path} [agent]: port {port} is out of range (1-65535; 0 picks a free port)")
    return {"port": port, "log_requests": log_requests, "state_file": section.get("state_file")}


def read_startup_state(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Handler(BaseHTTPRequestHandler):
    server_version = NAME

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/healthz":
            self._reply(404, {"status": "not found", "path": self.path})
            return
        info = self.server.info
        self._reply(
            200,
            {
                "status": "ok",
                "name": NAME,
                "version": info["version"],
                "pid": os.getpid(),
                "uptime_seconds": int(time.monotonic() - info["started"]),
                "startup": read_startup_state(info["state_file"]),
            },
        )

    def _reply(self, code, body):
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        if self.server.info["log_requests"]:
            log(fmt % args)


def main(argv=None):
    parser = argparse.ArgumentParser(description="fleet-agent health endpoint")
    parser.add_argument(
        "--config",
        default=os.environ.get("FLEET_AGENT_CONFIG", DEFAULT_CONFIG),
        help=f"INI settings file (default {DEFAULT_CONFIG})",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ValueError as e:
        log(f"error: {e}")
        return 2
    try:
        server = ThreadingHTTPServer((ADDRESS, settings["port"]), Handler)
    except OSError as e:
        log(
            f"error: cannot listen on {ADDRESS}:{settings['port']} ({e.strerror}); "
            f"is another agent running? change port in {args.config}"
        )
        return 1
    server.daemon_threads = True
    server.info = {**settings, "version": installed_version(), "started": time.monotonic()}
    # SIGTERM (systemctl stop) ends serve_forever() from another thread: a clean exit 0.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log(f"version {server.info['version']} listening on {ADDRESS}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
