#!/usr/bin/env python3
"""debship demo: build the sample, boot a local Debian 12 guest under qemu, ship to it.

Run through `make demo` (tools/demo.sh installs qemu & co. and ./.venv first).
Steps, each timed:

  1. build the sample bundle into dist/ with the real `build-deb`;
  2. get the guest image (built once with mmdebstrap, ~1.5 min, then cached in
     ~/.cache/debship/vm/);
  3. start qemu with a fresh overlay and a NoCloud seed (user `ops`, an SSH key,
     passwordless sudo), exactly as a cloud instance boots;
  4. run the real `ship` at once: it waits for SSH and cloud-init, uploads,
     installs with apt, checks the services and the health command;
  5. ask the agent for its /healthz answer, inside the guest;
  6. power the guest off and delete it.

Options: --keep leaves the guest running until you press Enter (and prints the
ssh command to log in); --deb FILE ships that package instead of building.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hostlab.vm import VMGuest, cached_image  # noqa: E402

VENV = REPO / ".venv" / "bin"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def build_sample() -> Path:
    say("building the sample bundle with build-deb")
    proc = subprocess.run(
        [str(VENV / "build-deb"), "--project", str(REPO), "--out", str(REPO / "dist"), "--json"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"build-deb failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    say(f"built {built['name']} {built['version']}: {built['path']} ({built['size']} bytes)")
    return Path(built["path"])


def ship(vm: VMGuest, deb: Path) -> int:
    argv = [
        str(VENV / "ship"),
        str(deb),
        "--host",
        vm.address,
        *vm.ship_args(),
        "--connect-timeout",
        "600",
        "--boot-timeout",
        "600",
    ]
    say("shipping right away; ship waits for SSH and cloud-init by itself:")
    print("  $ " + shlex.join(["ship", deb.name, "--host", vm.address, "-i", "<key>", "…"]), flush=True)
    env = {**os.environ, "SSH_AUTH_SOCK": ""}
    return subprocess.run(argv, env=env).returncode


def show_health(vm: VMGuest) -> None:
    port = 8787
    conf = vm.run(["sed", "-n", "s/^port *= *//p", "/etc/fleet-agent/agent.conf"])
    if conf.ok and conf.stdout.strip().isdigit():
        port = int(conf.stdout.strip())
    r = vm.run(["curl", "-s", "--max-time", "10", f"http://127.0.0.1:{port}/healthz"])
    say(f"inside the guest: curl http://127.0.0.1:{port}/healthz")
    try:
        print(json.dumps(json.loads(r.stdout), indent=2), flush=True)
    except ValueError:
        print(f"  (no JSON answer, exit {r.exit_code}) {r.stdout}{r.stderr}", flush=True)
    r = vm.run(
        [
            "systemctl",
            "show",
            "-p",
            "Id,ActiveState,SubState,UnitFileState",
            "--",
            "fleet-agent.service",
            "fleet-agent-startup.service",
        ]
    )
    for block in r.stdout.strip().split("\n\n"):
        u = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if u.get("Id"):
            note = (
                "  (a oneshot run at every boot; the postinst already ran startup.py)"
                if u["Id"] == "fleet-agent-startup.service" and u.get("ActiveState") != "active"
                else ""
            )
            print(
                f"  {u['Id']}: {u.get('ActiveState')} ({u.get('SubState')}), {u.get('UnitFileState')}{note}", flush=True
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the guest running until Enter is pressed")
    parser.add_argument("--deb", type=Path, help="ship this .deb instead of building the sample")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit(
            "the demo builds the guest image with mmdebstrap and mkfs.ext4 -d: run it as root "
            "(make demo does, through sudo)"
        )

    deb = args.deb.resolve() if args.deb else build_sample()
    say("guest image: Debian 12 with systemd, sshd, cloud-init (built once, then cached)")
    image = cached_image(log=lambda s: say(s))
    say(f"guest image ready: {image.disk}")

    vm = VMGuest(image, log=lambda s: say(s))
    try:
        say(f"qemu started: the guest boots; its sshd will be on 127.0.0.1:{vm.port}")
        code = ship(vm, deb)
        say(f"ship exited {code}")
        if code in (0, 3):
            show_health(vm)
        if args.keep:
            print(
                f"\nthe guest keeps running; log in with:\n  ssh -i {vm.key_path} -p {vm.port} "
                f"-o UserKnownHostsFile={vm.known_hosts} ops@127.0.0.1\npress Enter to shut it down",
                flush=True,
            )
            try:
                input()
            except EOFError:
                pass
        say("shutting the guest down")
        clean = vm.shutdown(timeout=120)
        say("guest powered off" if clean else "guest did not power off in time; killed")
    finally:
        vm.close()
    say(
        f"done in {time.monotonic() - T0:.0f} s"
        + ("" if args.keep else "; `make demo ARGS=--keep` leaves the guest running for you to log in")
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
