#!/usr/bin/python
# Copyright: debship contributors; MIT license
"""Ansible module: install a debship package on the host with ``debship apply``."""

from __future__ import annotations

DOCUMENTATION = r"""
module: apply
short_description: Install a debship package with debship's checks and automatic rollback
description:
  - Runs C(debship apply) on the host (python3-debship must be installed there), which takes the host
    lock, runs apt's simulation, installs, checks the units and the health command, rolls back to
    the previous version when they fail, records the deploy and pins the version in apt.
  - In check mode it runs C(debship apply --dry-run) and returns the plan; nothing changes.
  - C(changed) is true only when the installed version changed.
  - In diff mode the diff shows the installed version and the package's units (enabled state and
    active state, read on the host with dpkg-query and systemctl) before and after; in check mode
    the after side is debship's plan (the version and the units it starts, restarts and stops).
options:
  deb:
    description: Path of a .deb on the host.
    type: path
  package:
    description: NAME=VERSION, from the host's debship store or, with I(repo), from that repository.
    type: str
  repo:
    description: URL of a signed apt repository made by C(debship publish).
    type: str
  repo_key:
    description: The repository's public key file on the host.
    type: path
  allow_removals:
    description: Let the install remove other packages when apt says it must.
    type: bool
    default: false
  rollback:
    description: Roll back to the previous version when the install or a check fails.
    type: bool
    default: true
  start_timeout:
    description: Seconds for the units to become active and the health command to pass.
    type: float
    default: 60
  lock_timeout:
    description: Seconds to wait for the host's ship lock and for dpkg's lock.
    type: int
    default: 300
  executable:
    description: The debship command on the host.
    type: path
    default: debship
author: debship contributors
"""

EXAMPLES = r"""
- hosts: web
  serial: [1, "25%", "100%"]
  max_fail_percentage: 10
  become: true
  tasks:
    - debship.fleet.apply:
        package: fleet-agent=1.4.0
        repo: https://apt.example.com
        repo_key: /etc/debship/archive.asc
"""

RETURN = r"""
before: {description: the version installed before, type: str, returned: always}
after: {description: the version installed after, type: str, returned: always}
outcome:
  description: debship's outcome (installed, unchanged, dry-run, rolled-back, failed)
  type: str
  returned: always
plan: {description: what the install would do (check mode) or did, type: dict, returned: when an install was planned}
events: {description: debship's events, one dict per step, type: list, returned: always}
host_before:
  description: the installed version and units (name, enabled, active) before the run
  type: dict
  returned: in diff mode
host_after:
  description: the same after the run (not in check mode, where the diff shows the plan)
  type: dict
  returned: in diff mode, not in check mode
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

UNIT_FILE = re.compile(r"^/(?:usr/)?lib/systemd/system/([^/]+\.(?:service|socket|timer|path|mount|target))$")


def package_name(module, p):
    if p["package"]:
        return p["package"].split("=", 1)[0]
    rc, out, _ = module.run_command(["dpkg-deb", "--field", p["deb"], "Package"])
    return out.strip() if rc == 0 else ""


def host_state(module, name):
    """The installed version (None: not installed) and the package's units as systemd sees them
    (active is None where systemd is not running, as in a chroot)."""
    rc, out, _ = module.run_command(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", "--", name])
    fields = out.split()
    version = fields[1] if rc == 0 and len(fields) == 2 and fields[0] == "ii" else None
    units = []
    if version is not None:
        _, listing, _ = module.run_command(["dpkg-query", "-L", "--", name])
        running = os.path.isdir("/run/systemd/system")
        for unit in sorted({m.group(1) for m in map(UNIT_FILE.match, listing.splitlines()) if m}):
            _, enabled, _ = module.run_command(["systemctl", "is-enabled", "--", unit])
            active = module.run_command(["systemctl", "is-active", "--", unit])[1].strip() if running else None
            units.append(dict(name=unit, enabled=enabled.strip() or "unknown", active=active))
    return dict(package=name, version=version, units=units)


def render(state):
    lines = [f"{state['package']} {state['version'] or '(not installed)'}"]
    for u in state["units"]:
        active = u["active"] if u["active"] is not None else "systemd not running"
        lines.append(f"  {u['name']}: {u['enabled']}, {active}")
    return "\n".join(lines) + "\n"


def render_plan(name, plan, before):
    """Check mode's after side: the planned version and what the install does to the units."""
    if not plan:
        return render(before)
    lines = [f"{name} {plan['to']} (planned)"]
    for label, key in (("starts", "starts"), ("restarts", "restarts"), ("stops and disables", "drops")):
        lines += [f"  {unit}: {label}" for unit in plan.get(key) or []]
    lines += [f"  {unit}: left alone (disabled or masked)" for unit in plan.get("left_alone") or []]
    return "\n".join(lines) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            deb=dict(type="path"),
            package=dict(type="str"),
            repo=dict(type="str"),
            repo_key=dict(type="path"),
            allow_removals=dict(type="bool", default=False),
            rollback=dict(type="bool", default=True),
            start_timeout=dict(type="float", default=60.0),
            lock_timeout=dict(type="int", default=300),
            executable=dict(type="path", default="debship"),
        ),
        mutually_exclusive=[("deb", "package")],
        required_one_of=[("deb", "package")],
        required_together=[("repo", "repo_key")],
        supports_check_mode=True,
    )
    p = module.params
    debship = module.get_bin_path(p["executable"], required=True)
    argv = [
        debship,
        "apply",
        p["deb"] or p["package"],
        "--json",
        "--start-timeout",
        str(p["start_timeout"]),
        "--lock-timeout",
        str(p["lock_timeout"]),
    ]
    if p["repo"]:
        argv += ["--repo", p["repo"], "--repo-key", p["repo_key"]]
    if p["allow_removals"]:
        argv.append("--allow-removals")
    if not p["rollback"]:
        argv.append("--no-rollback")
    if module.check_mode:
        argv.append("--dry-run")
    name = package_name(module, p) if module._diff else ""
    host_before = host_state(module, name) if name else None
    rc, out, err = module.run_command(argv)
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    summary = next((e for e in events if e.get("step") == "summary"), None)
    if summary is None:  # bad usage or nothing to apply: debship's one-line message
        module.fail_json(msg=(err.strip().splitlines() or [f"debship apply exited {rc}"])[-1], rc=rc, events=events)
    plan = next((e["detail"] for e in events if e.get("step") == "plan"), None)
    before, after, outcome = summary.get("before"), summary.get("after"), summary.get("outcome")
    name = name or summary.get("package") or ""
    result = dict(before=before, after=after, outcome=outcome, plan=plan, events=events, rc=rc)
    if module.check_mode:
        result["changed"] = outcome == "dry-run" and plan is not None
    else:
        result["changed"] = before != after
    if module._diff:
        if host_before is None:  # a .deb dpkg-deb could not read: debship's summary still names it
            host_before = dict(package=name, version=before, units=[])
        result["host_before"] = host_before
        if module.check_mode:
            after_text = render_plan(name, plan, host_before)
        else:
            result["host_after"] = host_state(module, name)
            after_text = render(result["host_after"])
        result["diff"] = dict(before=render(host_before), after=after_text)
    if rc != 0:
        module.fail_json(msg=summary.get("detail") or f"debship apply exited {rc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
