#!/usr/bin/python3
"""fleet-agent health check: GET http://127.0.0.1:<port>/healthz and print the JSON.

Exit 0 when the agent answers {"status": "ok"} (and, with --expect-version V,
reports version V); 1 when it does not within --wait seconds (it may still be
starting right after an install or a restart); 2 for a bad setting.  The port
comes from --port, else agent.conf (--config, FLEET_AGENT_CONFIG, default
/etc/fleet-agent/agent.conf), else 8787.  Standard library only.
"""

import argparse
import configparser
import json
import os
import sys
import time
import urllib.error
import urllib.request

DEFAULT_CONFIG = "/etc/fleet-agent/agent.conf"
DEFAULT_PORT = 8787


def configured_port(path):
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
        return parser.getint("agent", "port", fallback=DEFAULT_PORT)
    except (configparser.Error, ValueError) as e:
        raise ValueError(f"{path}: cannot read the port ({e})") from e


def probe(url, timeout):
    """(body dict or None, problem or None) for one GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode()), None
    except urllib.error.HTTPError as e:
        return None, f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return None, str(getattr(e, "reason", e))


def check(body, expect_version):
    if body.get("status") != "ok":
        return f"status is {body.get('status')!r}"
    if expect_version is not None and body.get("version") != expect_version:
        return f"version is {body.get('version')!r}, expected {expect_version!r}"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="check the fleet-agent health endpoint")
    parser.add_argument("--config", default=os.environ.get("FLEET_AGENT_CONFIG", DEFAULT_CONFIG))
    parser.add_argument("--port", type=int, help="default: port in the config, else 8787")
    parser.add_argument("--expect-version", metavar="V", help="also require this installed version")
    parser.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS", help="keep trying this long (default 10)"
    )
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else configured_port(args.config)
    except ValueError as e:
        print(f"healthcheck: {e}", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + max(args.wait, 0)
    while True:
        body, problem = probe(url, timeout=3)
        if body is not None:
            problem = check(body, args.expect_version)
            if problem is None:
                print(json.dumps(body, sort_keys=True))
                return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if body is not None:
        print(json.dumps(body, sort_keys=True))
    print(f"healthcheck: {url}: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
