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
"""

import json

from ansible.module_utils.basic import AnsibleModule


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
    name = summary.get("package") or ""
    result = dict(before=before, after=after, outcome=outcome, plan=plan, events=events, rc=rc)
    if module.check_mode:
        result["changed"] = outcome == "dry-run" and plan is not None
        target = plan["to"] if plan else after
    else:
        result["changed"] = before != after
        target = after
    if module._diff:
        result["diff"] = dict(
            before=f"{name} {before or '(not installed)'}\n", after=f"{name} {target or '(not installed)'}\n"
        )
    if rc != 0:
        module.fail_json(msg=summary.get("detail") or f"debship apply exited {rc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
