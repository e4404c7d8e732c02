"""Command-line entry points. Each command parses options and calls one library function;
this is the only place a ``DebshipError`` becomes a message and an exit code."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
from pathlib import Path

import click

from . import __version__
from .compress import COMPRESSIONS
from .errors import DebshipError, UsageError


def reports_errors(func=None, *, table: dict | None = None):
    """Turn a foreseen failure into one line on stderr and its exit code; no traceback.

    ``table`` maps error classes to the command's own exit codes (the first match wins;
    ``DebshipError`` is the default), so that no code of a command means two things."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except DebshipError as e:
                ctx = click.get_current_context()
                message = " ".join(str(e).splitlines())  # always one line
                click.echo(f"{ctx.info_name}: error: {message}", err=True)
                code = next((c for cls, c in (table or {}).items() if isinstance(e, cls)), e.exit_code)
                ctx.exit(code)

        return wrapper

    return decorate(func) if func is not None else decorate


# ship's table: 0, 1 and 3 say how the hosts ended; before any host is reached only these two.
SHIP_ERRORS = {UsageError: 2, DebshipError: 6}


# The key that signs a repository's Release file (publish, phase).
release_key_option = click.option(
    "--sign-key",
    required=True,
    metavar="KEYID",
    help="GnuPG key (fingerprint, id or e-mail in $GNUPGHOME) that signs the Release file.",
)


def login_options(func):
    """The SSH login options that every command reaching hosts takes, declared once."""
    options = [
        click.option(
            "--identity",
            "-i",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="Private key to log in with (else ~/.ssh/config, the SSH agent and default keys).",
        ),
        click.option(
            "--ssh-config",
            type=click.Path(dir_okay=False, path_type=Path),
            help="OpenSSH client config to read  [default: ~/.ssh/config]",
        ),
        click.option(
            "--known-hosts",
            type=click.Path(dir_okay=False, path_type=Path),
            help="known_hosts file to check and extend  [default: ~/.ssh/known_hosts]",
        ),
        click.option("--strict-host-keys", is_flag=True, help="Refuse hosts whose key is not in known_hosts yet."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Project folder holding pyproject.toml (or debship.toml) and the bundle.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the .deb into  [default: <project>/dist]",
)
@click.option(
    "--version",
    "version",
    default=None,
    help="Package version, overriding the config and git (PEP 440 and semver are converted).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default="xz",
    show_default=True,
    help="Compression of the control and data archives.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing the .deb.")
@click.option("--list", "listing", is_flag=True, help="Show what would be installed where, without building.")
@click.option(
    "--sign-key",
    metavar="KEYID",
    default=None,
    help="Also write a detached signature <file>.deb.sig with this GnuPG key (the .deb is unchanged).",
)
@click.version_option(__version__, "-V", "--debship-version", prog_name="debship", message="%(prog)s %(version)s")
@reports_errors
def build_deb(
    project: Path,
    out: Path | None,
    version: str | None,
    compression: str,
    sign_key: str | None,
    as_json: bool,
    listing: bool,
) -> None:
    """Bundle the project's units/, scripts/ and configs/ into one reproducible .deb.

    On success the last line printed is the path of the .deb.
    """

    # Imported here: the other commands (diff reads two packages in bounded memory) need none of it.
    from .build import build_deb as build_deb_lib
    from .build import list_plan

    def warn(message: str) -> None:
        click.echo(f"build-deb: warning: {' '.join(message.splitlines())}", err=True)

    if listing:
        spec, plan = list_plan(project, version)
        for message in (*spec.warnings, *plan.warnings):
            warn(message)
        _print_plan(spec, plan)
        return
    if compression == "zstd":
        warn("zstd needs dpkg >= 1.21.18 on the host (Debian 12, Ubuntu 22.04 or newer); use xz for older hosts")
    built = build_deb_lib(project, out, version, compression, warn=warn)
    signature = None
    if sign_key:
        from .pkgsig import sign

        signature = sign(built.path, sign_key)
    if as_json:
        click.echo(
            json.dumps({**built.as_dict(), **({"signature": str(signature)} if signature else {})}, sort_keys=True)
        )
        return
    click.echo(f"built {built.name} {built.version} ({built.architecture}), {built.size} bytes, sha256 {built.sha256}")
    if signature:
        click.echo(f"signed with {sign_key}: {signature}")
    click.echo(
        os.path.relpath(built.path) if not Path(os.path.relpath(built.path)).parts[0] == ".." else str(built.path)
    )


def _print_plan(spec, plan) -> None:
    click.echo(f"{spec.name} {spec.version} ({spec.architecture})")
    width = max((len(e.dest) for e in plan.entries), default=0)
    for e in plan.entries:
        src = os.path.relpath(e.src, spec.project_dir)
        click.echo(f"  {e.dest:<{width}}  {e.mode:04o}  {e.kind:<8}  {src}")
    for u in plan.units:
        click.echo(
            f"  unit {u.name}: enable={'yes' if u.enable else 'no'} start={'yes' if u.start else 'no'} "
            f"on-upgrade={u.on_upgrade}"
        )
    click.echo(f"  startup: {plan.startup or 'off'}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("deb", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--host", "hosts", multiple=True, metavar="[USER@]HOST[:PORT]", help="A host to ship to; repeat for more."
)
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A file with one host per line (# comments and blank lines ignored).",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Project whose dist/ holds the .deb when DEB is not given (the newest one is taken).",
)
@login_options
@click.option("--host-key", help="Accept only this host key ('ssh-ed25519 AAAA…' or 'SHA256:…').")
@click.option(
    "--connect-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to keep retrying while a host boots and sshd is not up.",
)
@click.option(
    "--boot-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for cloud-init (or systemd) to finish booting.",
)
@click.option(
    "--lock-timeout",
    type=int,
    default=300,
    show_default=True,
    help="Seconds apt waits for a dpkg lock held by another process.",
)
@click.option(
    "--start-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds for the units to become active and the health command to pass.",
)
@click.option(
    "--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="Hosts shipped to at the same time."
)
@click.option(
    "--batch",
    default="0",
    show_default=True,
    metavar="N|LIST",
    help="Ship in batches: N hosts at a time, or a list of counts and percentages of all the hosts "
    "such as 1,10%,100% (one canary host, then 10% of the hosts, then all the rest); the last "
    "step repeats until every host is done; 0: all in one batch.",
)
@click.option(
    "--max-fail",
    metavar="N|P%",
    help="Failure budget: halt the run once N hosts failed over the whole run, or once P% of a "
    "batch or P% of all the hosts failed (a percentage is checked per batch, so a failed "
    "canary halts at once, and for the run, so thin failures over many batches add up). "
    "Hosts not started are skipped and, unless --no-rollback, the hosts this run moved go back "
    "to their versions.  [default: never halt]",
)
@click.option(
    "--soak",
    metavar="DURATION",
    default="0",
    help="After each batch is installed and healthy, keep watching it this long (30s, 5m, 1h; "
    "a plain number is seconds) before the next batch: the units stay active, their restart "
    "counts do not climb, the health command keeps passing.  A host failing the soak counts "
    "as failed, is rolled back (unless --no-rollback), and halts the run (a batch that does not "
    "bake cleanly is not promoted: the hosts this run moved go back).  [default: 0, no soak]",
)
@click.option("--max-failures", type=click.IntRange(0), default=None, help="Same as --max-fail N (the older name).")
@click.option("--force", is_flag=True, help="Reinstall when the host has this version with other contents.")
@click.option("--dry-run", is_flag=True, help="Connect, wait for boot and show what would be done; change nothing.")
@click.option("--reboot", is_flag=True, help="Reboot after installing and check the services come back.")
@click.option(
    "--no-rollback",
    is_flag=True,
    help="When install or verify fails, leave the host as it is instead of going back to "
    "its previous version; and when a run halts (--max-fail, --soak, Ctrl-C, SIGTERM), leave "
    "the hosts it moved on the new version.",
)
@click.option(
    "--allow-removals",
    is_flag=True,
    help="Let the install remove other packages when apt's simulation says it must (Conflicts:).",
)
@click.option(
    "--rollback",
    "mode",
    flag_value="rollback",
    help="Install the version each host had before the current one (from its local store).",
)
@click.option(
    "--to-version", metavar="VERSION", help="Install this version from each host's local store (upgrade or downgrade)."
)
@click.option("--list", "mode", flag_value="list", help="Show the installed and the kept versions on each host.")
@click.option(
    "--package", metavar="NAME", help="Package name for --rollback/--to-version/--list when there is no .deb at hand."
)
@click.option(
    "--via-repo",
    metavar="URL",
    help="Install from this signed apt repository (see `debship publish`) instead of uploading the .deb.",
)
@click.option(
    "--repo-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The repository's public key (debship-archive-keyring.asc or .gpg), for --via-repo.",
)
@click.option("--suite", default="stable", show_default=True, help="Suite of the --via-repo repository.")
@click.option("--component", default="main", show_default=True, help="Component of the --via-repo repository.")
@click.option(
    "--trust-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Install this public key in /etc/debship/keys/ on each host first: from then on the host "
    "installs only packages with a .deb.sig signature by a key it holds.",
)
@click.option(
    "--take-over",
    is_flag=True,
    help="Ship to hosts that follow the repository (apply --follow) too: they become push-managed (pinned).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event, one per line.")
@reports_errors(table=SHIP_ERRORS)
def ship(
    deb,
    hosts,
    hosts_file,
    project,
    identity,
    ssh_config,
    known_hosts,
    strict_host_keys,
    host_key,
    connect_timeout,
    boot_timeout,
    lock_timeout,
    start_timeout,
    parallel,
    batch,
    max_fail,
    soak,
    max_failures,
    force,
    dry_run,
    reboot,
    no_rollback,
    allow_removals,
    mode,
    to_version,
    package,
    via_repo,
    repo_key,
    suite,
    component,
    trust_key,
    take_over,
    as_json,
) -> None:
    """Upload one .deb over SSH, wait for cloud-init, install it with apt and verify the services.

    With --via-repo the hosts install it from a signed apt repository instead
    (`debship publish`), with the same waiting, checks and rollback.

    Exit status: 0 every host is at the new version and healthy (or unchanged,
    or --dry-run, --list); 1 at least one host failed or was skipped; 3 install or
    verify failed and every such host was rolled back to its previous version;
    2 bad usage; 6 nothing could be shipped (bad package, no hosts).
    """
    # Imported here: paramiko takes longer to import than build-deb takes to build a small package.
    from .ship import fleet
    from .ship import rollout as rollout_lib
    from .ship.sshconfig import ConnectOptions

    mode = "rollback" if to_version else (mode or "ship")
    if trust_key is not None and mode != "ship":
        raise UsageError(
            "--trust-key goes with shipping a package (it is installed before the package); "
            "drop --rollback/--to-version/--list, or ship without --trust-key"
        )
    trusted = _trusted(trust_key)
    pkg = fleet.package_for(mode, deb, package, project)
    specs = fleet.parse_hosts(hosts, hosts_file)
    policy = "pin" if host_key else ("strict" if strict_host_keys else "accept-new")
    connect = ConnectOptions(
        connect_timeout=connect_timeout,
        host_keys=policy,
        pinned_key=host_key,
        known_hosts=known_hosts,
        ssh_config=ssh_config,
        identity_file=identity,
    )
    repo = fleet.via_repo(pkg.name, via_repo, repo_key, suite, component) if via_repo or repo_key else None
    view = None
    if not as_json and sys.stdout.isatty():  # a pipe or a file gets the plain lines
        from .terminal import TerminalView

        view = TerminalView(len(specs), _text_event)
    opts = fleet.ShipOptions(
        connect=connect,
        boot_timeout=boot_timeout,
        lock_timeout=lock_timeout,
        start_timeout=start_timeout,
        force=force,
        dry_run=dry_run,
        reboot=reboot,
        rollback_on_failure=not no_rollback,
        via_repo=repo,
        progress=view.upload if view else None,
        allow_removals=allow_removals,
        take_over=take_over,
        trust_key=trusted,
    )
    render = _json_event if as_json else (view.event if view else _text_event)
    if max_fail is not None and max_failures is not None:
        raise UsageError("--max-fail and --max-failures are the same option; give one of them")
    rollout = {
        "parallel": parallel,
        "batch": batch,
        "max_fail": max_fail if max_fail is not None else str(max_failures or 0),
    }
    rollout_lib.parse_batches(batch), rollout_lib.parse_max_fail(rollout["max_fail"])  # bad input: before any host
    soak_seconds = rollout_lib.parse_duration(soak, "--soak")
    if view is not None:
        rollout["on_done"] = view.done
    if mode == "ship":
        if not as_json:
            click.echo(f"shipping {pkg.name} {pkg.version} ({pkg.size} bytes) to {len(specs)} host(s)")
        results = fleet.ship(pkg, specs, opts, render, soak=soak_seconds, **rollout)
    elif mode == "list":
        results = fleet.list_kept(pkg.name, specs, opts, render, **rollout)
    elif to_version:
        results = fleet.to_version(pkg.name, to_version, specs, opts, render, **rollout)
    else:
        results = fleet.rollback(pkg.name, specs, opts, render, **rollout)
    if view is not None:
        view.close()
    (_json_summary if as_json else _text_summary)(results, pkg)
    click.get_current_context().exit(fleet.exit_code(results))


def _trusted(path: Path | None):
    if path is None:
        return None
    from .pkgsig import read_trust_key

    return read_trust_key(path)


_MARKS = {"start": "..", "ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def _text_event(e) -> None:
    if e.status == "start" and e.host:
        return
    detail = f"  {e.detail}" if e.detail else ""
    click.echo(
        f"{'[' + e.host + ']' if e.host else '=='} {e.step:<8} {_MARKS[e.status]:<4} {e.elapsed:7.1f}s{detail}",
        err=e.status == "fail",
    )
    if e.status == "fail" and e.data and "journal" in e.data:  # what the host says of the failing unit
        for line in [*e.data.get("status", [])[:3], *e.data["journal"]]:
            click.echo(f"    | {line}", err=True)


def _json_event(e) -> None:
    event = dataclasses.asdict(e)
    data = event.pop("data")
    if data is not None:
        event["detail"] = data
    click.echo(json.dumps(event, sort_keys=True))


def _text_summary(results, pkg) -> None:
    rows = [("host", "before", "after", "outcome", "time", "detail")]
    rows += [(r.host, r.before or "-", r.after or "-", r.outcome, f"{r.elapsed:.1f}s", r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    click.echo("")
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[5])
    ok = sum(r.ok for r in results)
    rolled = sum(r.outcome == "rolled-back" for r in results)
    reverted = sum(r.outcome == "reverted" for r in results)
    if ok == len(results):
        afters = {r.after for r in results}
        common = afters.pop() if len(afters) == 1 else None
        name = pkg.name or next((r.package for r in results if r.package), "")
        click.echo(f"{ok}/{len(results)} host(s) at {name} {common}" if common else f"{ok}/{len(results)} host(s) fine")
    else:
        click.echo(
            f"{len(results) - ok - reverted} of {len(results)} host(s) failed or skipped"
            + (f" ({rolled} rolled back)" if rolled else "")
            + (f"; the run halted and {reverted} host(s) it moved went back" if reverted else "")
        )


def _json_summary(results, pkg) -> None:
    for r in results:
        click.echo(
            json.dumps(
                {
                    "host": r.host,
                    "step": "summary",
                    "status": "ok" if r.ok else "fail",
                    "elapsed": r.elapsed,
                    "detail": r.detail,
                    "outcome": r.outcome,
                    "before": r.before,
                    "after": r.after,
                    "package": r.package or pkg.name,
                    "version": pkg.version,
                },
                sort_keys=True,
            )
        )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Project whose dist/ is searched for an argument given as NAME=VERSION.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: lists of what changed, and details.")
@reports_errors
def diff(old: str, new: str, project: Path, as_json: bool) -> None:
    """Show what changes from package OLD to package NEW: control fields, files,
    conffiles, systemd units by directive, maintainer scripts.

    OLD and NEW are paths to .debs or NAME=VERSION, found in <project>/dist by the
    fields inside each .deb.  Exit status: 0 compared (whether or not they differ);
    2 bad usage, no such file, NAME=VERSION not in dist/; 7 a file is not a
    readable .deb.
    """
    from .debdiff import compare
    from .diffview import render
    from .dist import resolve

    result = compare(resolve(old, project), resolve(new, project))
    if as_json:
        click.echo(json.dumps(result.as_dict(), sort_keys=True))
        return
    click.echo("\n".join(render(result)))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("debs", nargs=-1, metavar="DEBS...", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--repo",
    "repo_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the apt repository (created if missing); serve it as static files.",
)
@click.option("--suite", default="stable", show_default=True, help="Suite (and codename) to publish into.")
@click.option("--component", default="main", show_default=True, help="Component to publish into.")
@release_key_option
@click.option(
    "--publish-secrets",
    is_flag=True,
    help="Publish packages carrying admitted secrets (allow-secrets) anyway: everyone who reaches "
    "the repository can then read them.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Read and hash every pool file of the suite, not only the new .debs (DEBS may then be "
    "omitted); a .deb given with the published bytes of a damaged pool file restores it.",
)
@click.option(
    "--phase",
    type=int,
    metavar="PERCENT",
    help="Publish the .debs added now to PERCENT (0-100) of the hosts that follow the repository "
    "(apt's Phased-Update-Percentage); raise, halt or complete it with `debship phase`.",
)
@reports_errors
def publish(debs, repo_dir, suite, component, sign_key, publish_secrets, verify, phase) -> None:
    """Add .debs to a signed apt repository in a folder, keeping every version.

    Writes pool/, dists/<suite>/ (Packages, by-hash, Release, InRelease,
    Release.gpg) and the public key as debship-archive-keyring.gpg and .asc.
    A .deb already published byte for byte is a no-op; another .deb with the
    same name, version and architecture is refused (exit 7), and so is a .deb
    carrying admitted secrets unless --publish-secrets.

    Only the new .debs are read: the pool files already published are known
    from the last publish (DIR/.debship-pool.json) while their size and mtime
    are unchanged.  A pool file whose bytes differ from the signed index is
    refused (exit 7); --verify checks every pool file (docs/publish.md).
    """
    if not debs and not verify:
        ctx = click.get_current_context()
        raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == "debs"))
    from .repo import publish as publish_lib

    result = publish_lib(
        list(debs),
        repo_dir,
        suite,
        component,
        sign_key=sign_key,
        warn=lambda m: click.echo(f"publish: warning: {m}", err=True),
        publish_secrets=publish_secrets,
        verify=verify,
        phase=phase,
    )
    for path in result.repaired:
        click.echo(f"repaired {path} (restored the published bytes)")
    for path in result.added:
        click.echo(f"added {path}" + (f" (phased: {phase}% of hosts)" if phase is not None and phase < 100 else ""))
    for path in result.unchanged:
        click.echo(f"unchanged {path} (already published)")
    state = "signed" if result.changed or result.repaired else "unchanged, nothing written"
    if verify:
        state += "; every pool file verified"
    click.echo(f"{suite}/{component}: {result.packages} package(s), {state}; keyring {result.keyring}")


@click.command("phase", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("repo_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.argument("version")
@click.option("--percent", type=int, metavar="P", help="Offer the version to P% (0-100) of the following hosts.")
@click.option("--halt", is_flag=True, help="Stop offering it (0%): no further host takes it.")
@click.option("--complete", is_flag=True, help="Offer it to every host (the phase field removed).")
@click.option("--suite", default="stable", show_default=True, help="Suite the version is published in.")
@click.option("--component", default="main", show_default=True, help="Component the version is published in.")
@release_key_option
@reports_errors
def phase(repo_dir, name, version, percent, halt, complete, suite, component, sign_key) -> None:
    """Raise, halt or complete the phased rollout of NAME VERSION in the repository in DIR.

    Rewrites that version's Phased-Update-Percentage in every Packages index of
    the suite and signs the suite again, with publish's lock and atomic switch.
    Hosts that follow the repository take the version when their machine's
    bucket (from /etc/machine-id) is under the percentage: through apt-get
    upgrade and unattended-upgrades, or `debship apply --follow` (docs/rollouts.md).
    """
    from .repo import set_phase

    chosen = [
        what
        for what, given in (("--percent", percent is not None), ("--halt", halt), ("--complete", complete))
        if given
    ]
    if len(chosen) != 1:
        raise UsageError(f"give exactly one of --percent P, --halt or --complete (got {', '.join(chosen) or 'none'})")
    target = 0 if halt else 100 if complete else percent
    result = set_phase(repo_dir, name, version, target, suite, component, sign_key=sign_key)
    word = (
        "complete (every host)" if result.after >= 100 else "halted (0%)" if result.after == 0 else f"{result.after}%"
    )
    if not result.changed:
        click.echo(f"{name} {version}: already {word}; nothing written")
    else:
        click.echo(f"{name} {version}: {result.before}% -> {word}; {suite}/{component} signed")


@click.command("cloud-init", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    "url",
    required=True,
    metavar="URL",
    help="URL of the repository as the new instances reach it (http://, https://).",
)
@click.option(
    "--repo-key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The repository's public key: debship-archive-keyring.asc (armored) or .gpg (binary).",
)
@click.option(
    "--package",
    "packages",
    multiple=True,
    metavar="NAME[=VERSION]",
    help="Package to install at first boot, optionally at one version; repeatable.",
)
@click.option("--suite", default="stable", show_default=True, help="Suite of the repository.")
@click.option("--component", default="main", show_default=True, help="Component of the repository.")
@click.option(
    "--name",
    "source_name",
    default="debship",
    show_default=True,
    help="Name of the apt source (its .list file and keyring on the instance); with --apply the "
    "source is debship's own, debship-<package>.",
)
@click.option(
    "--apply",
    "through_apply",
    is_flag=True,
    help="Install one NAME=VERSION with `debship apply` (python3-debship from the repository): "
    "health-checked, rolled back, recorded and pinned; a failed check ends cloud-init in error.",
)
@click.option(
    "--trust-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Also write this package-signing public key to /etc/debship/keys/: later ships to the "
    "instance install only packages it signed.",
)
@click.option(
    "--follow",
    is_flag=True,
    help="Install the --package NAME with `debship apply --follow` and keep following the repository's "
    "phased rollout with the timer debship-follow@NAME.timer (every 15 min): health-checked, "
    "rolled back locally, unpinned (docs/rollouts.md).",
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(min=1),
    help="With --apply or --follow: seconds for the units to become active and the health command to pass "
    "(debship apply's --start-timeout; its default 60 when not given).",
)
@reports_errors
def cloud_init(
    url, key_file, packages, suite, component, source_name, through_apply, trust_key, follow, start_timeout
) -> None:
    """Print cloud-init user-data that adds the repository and installs packages at first boot."""
    from .cloudinit import parse_package, user_data
    from .gpg import read_key

    wanted = [parse_package(p) for p in packages]
    if through_apply and follow:
        raise UsageError(
            "--apply installs one exact version, --follow the version the repository's phase offers; give one"
        )
    if start_timeout is not None and not (through_apply or follow):
        raise UsageError(
            "--start-timeout goes with --apply or --follow (debship apply's checks); add one of them or drop it"
        )
    click.echo(
        user_data(
            url,
            read_key(key_file),
            wanted,
            suite,
            component,
            source_name,
            through_apply,
            _trusted(trust_key),
            follow,
            start_timeout=start_timeout,
        ),
        nl=False,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", metavar="DEB|NAME=VERSION|NAME")
@click.option(
    "--repo",
    "repo_url",
    metavar="URL",
    help="Take NAME=VERSION from this signed apt repository (see `debship publish`) and install from it.",
)
@click.option(
    "--repo-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The repository's public key, for --repo.",
)
@click.option("--suite", default="stable", show_default=True, help="Suite of the --repo repository.")
@click.option("--component", default="main", show_default=True, help="Component of the --repo repository.")
@click.option(
    "--lock-timeout",
    type=int,
    default=300,
    show_default=True,
    help="Seconds to wait for the host's ship lock and for a dpkg lock held by another process.",
)
@click.option(
    "--start-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds for the units to become active and the health command to pass.",
)
@click.option("--force", is_flag=True, help="Reinstall when the host has this version with other contents.")
@click.option("--dry-run", is_flag=True, help="Show what would be done (apt's simulation included); change nothing.")
@click.option("--no-rollback", is_flag=True, help="When install or verify fails, leave the host as dpkg left it.")
@click.option(
    "--allow-removals",
    is_flag=True,
    help="Let the install remove other packages when apt's simulation says it must (Conflicts:).",
)
@click.option(
    "--follow",
    is_flag=True,
    help="TARGET is NAME: take the version apt's phasing offers this machine from the repository the "
    "host follows (--repo once, then remembered; unpinned; a version rolled back from is refused "
    "from then on). For a systemd timer (docs/rollouts.md).",
)
@click.option(
    "--take-over",
    is_flag=True,
    help="Switch a push-managed host to following the repository (with --follow), or back.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event, one per line.")
@reports_errors(table=SHIP_ERRORS)
def apply(
    target,
    repo_url,
    repo_key,
    suite,
    component,
    lock_timeout,
    start_timeout,
    force,
    dry_run,
    no_rollback,
    allow_removals,
    follow,
    take_over,
    as_json,
) -> None:
    """On the host itself (as root): install a .deb or NAME=VERSION the way `ship` does.

    The same lock, plan, apt simulation, install, verify, health check,
    automatic rollback, record and pin as `ship`, without SSH.  NAME=VERSION
    comes from the host's store (a version kept by ship or apply) or, with
    --repo URL --repo-key FILE, from that signed repository.  Exit status as
    `ship`'s: 0 installed or unchanged, 1 failed, 3 failed and rolled back,
    2 bad usage, 6 nothing to apply.
    """
    from .ship import fleet
    from .ship.apply import apply as apply_here
    from .ship.apply import follow as follow_here
    from .ship.options import ShipOptions

    if follow and not re.match(r"^[a-z0-9][a-z0-9+.-]+$", target):
        raise UsageError(f"--follow takes a package NAME, not {target!r} (the repository's phasing picks the version)")
    name = target if follow else ""
    name = name or (target.split("=", 1)[0] if "=" in target and not target.endswith(".deb") else "")
    if not name and target.endswith(".deb") and Path(target).is_file():
        name = fleet.read_package(Path(target)).name
    repo = fleet.via_repo(name, repo_url, repo_key, suite, component) if repo_url or repo_key else None
    opts = ShipOptions(
        lock_timeout=lock_timeout,
        start_timeout=start_timeout,
        force=force,
        dry_run=dry_run,
        rollback_on_failure=not no_rollback,
        via_repo=repo,
        allow_removals=allow_removals,
        wait_for_boot=False,
        take_over=take_over,
    )
    if follow:
        pkg, result, why = follow_here(name, opts, _json_event if as_json else _text_event)
        if result is None:
            click.echo(json.dumps({"event": "summary", "outcome": "unchanged", "detail": why}) if as_json else why)
            return
    else:
        pkg, result = apply_here(target, opts, _json_event if as_json else _text_event)
    (_json_summary if as_json else _text_summary)([result], pkg)
    click.get_current_context().exit(fleet.exit_code([result]))


@click.command("status", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--host", "hosts", multiple=True, metavar="[USER@]HOST[:PORT]", help="A host to look at; repeat for more."
)
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A file with one host per line (# comments and blank lines ignored).",
)
@click.option(
    "--package",
    metavar="NAME",
    help="Package to report  [default: the newest .deb's in <project>/dist, else the one debship package on each host]",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Project whose dist/ names the package when --package is not given.",
)
@click.option("--expect", metavar="VERSION", help="Fail (exit 1) for every host not at this version.")
@login_options
@click.option(
    "--connect-timeout", type=float, default=30.0, show_default=True, help="Seconds to keep retrying to reach a host."
)
@click.option(
    "--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="Hosts looked at the same time."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per host, one per line.")
@reports_errors(table=SHIP_ERRORS)
def status(
    hosts,
    hosts_file,
    package,
    project,
    expect,
    identity,
    ssh_config,
    known_hosts,
    strict_host_keys,
    connect_timeout,
    parallel,
    as_json,
) -> None:
    """Show what runs where: per host the installed version, whether apt holds it,
    its units, its health command run now, the last ship and the kept versions.

    Read-only: no lock, nothing changed on the hosts (facts are read with sudo,
    as ship reads them).  Exit status: 0 every host is installed, active and
    healthy (and at --expect); 1 at least one is not, or could not be reached;
    2 bad usage; 6 no hosts.
    """
    from .ship import fleet
    from .ship.options import ShipOptions
    from .ship.sshconfig import ConnectOptions
    from .ship.status import status as status_lib

    if expect is not None:
        from .version import to_debian

        expect = to_debian(expect)
    pkg = fleet.package_for("list", None, package, project)
    specs = fleet.parse_hosts(hosts, hosts_file)
    connect = ConnectOptions(
        connect_timeout=connect_timeout,
        host_keys="strict" if strict_host_keys else "accept-new",
        known_hosts=known_hosts,
        ssh_config=ssh_config,
        identity_file=identity,
    )
    rows = status_lib(pkg, specs, ShipOptions(connect=connect), parallel)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict(expect), sort_keys=True))
    else:
        _text_status(rows, expect)
    click.get_current_context().exit(1 if any(row.problems(expect) for row in rows) else 0)


def _text_status(rows, expect) -> None:
    table = [("host", "package", "version", "held", "units", "health", "last ship", "kept")]
    for r in rows:
        if r.error:
            table.append((r.host, r.package or "-", "?", "-", "-", "-", "-", "-"))
            continue
        if not r.systemd:
            units = f"{len(r.units)} (no systemd)" if r.units else "-"
        else:  # the units the package enables and starts
            active = sum(u.active == "active" for u in r.units if u.name in r.checked)
            units = f"{active}/{len(r.checked)} active" if r.checked else "-"
        last = "-"
        if r.last:
            came = f" from {r.last.before}" if r.last.before else ""
            by = f" by {r.last.by}" if r.last.by else ""
            last = f"{r.last.when} {r.last.action} {r.last.version}{came}{by}"
        table.append(
            (
                r.host,
                r.package or "-",
                r.installed or "-",
                r.held
                or (f"follows {r.follows}" if r.follows else "-")
                + (f" (refuses {', '.join(r.refused)})" if r.refused else ""),
                units,
                r.health,
                last,
                ", ".join(r.kept) or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    bad = [(r, r.problems(expect)) for r in rows if r.problems(expect)]
    for r, problems in bad:
        click.echo(f"{r.host}: " + "; ".join(problems), err=True)
    click.echo(f"{len(rows) - len(bad)}/{len(rows)} host(s) fine" + (f" at {expect}" if expect else ""))


@click.command("init", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("project", metavar="[DIR]", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Package name  [default: [project].name, else the folder's name]")
@click.option(
    "--maintainer",
    metavar="'NAME <EMAIL>'",
    help="Maintainer  [default: [project].authors, DEBFULLNAME/DEBEMAIL, else git's user]",
)
@click.option("--startup", is_flag=True, help="Also write scripts/startup.py, run by postinst on every install.")
@click.option(
    "--ci",
    type=click.Choice(["github", "gitlab", "none"]),
    default="github",
    show_default=True,
    help="Example CI workflow to write: .github/workflows/debship.yml or .gitlab-ci.yml.",
)
@reports_errors
def init(project: Path, name: str | None, maintainer: str | None, startup: bool, ci: str) -> None:
    """Write a working debship configuration for the project in DIR.

    Looks at units/, scripts/, configs/, an existing pyproject.toml (its
    [tool.debship] table is appended, the rest untouched; without one,
    debship.toml is written) and git; never overwrites a file.  Then
    `build-deb --project DIR` builds the package.
    """
    from .init import propose, write

    proposal = propose(project, name=name, maintainer=maintainer, startup=startup, ci=None if ci == "none" else ci)
    for path in write(project, proposal):
        verb = (
            "appended [tool.debship] to"
            if path.name == "pyproject.toml" and proposal.config_path == "pyproject.toml"
            else "wrote"
        )
        click.echo(f"{verb} {os.path.relpath(path)}")
    for note in proposal.notes:
        click.echo(f"  note: {note}")
    where = "" if Path(project).resolve() == Path.cwd() else f" --project {project}"
    click.echo(f"next: build-deb{where}, then debship ship --host USER@HOST{where}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("debs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_id",
    required=True,
    metavar="KEYID",
    help="GnuPG key (fingerprint, id or e-mail in $GNUPGHOME) to sign with.",
)
@reports_errors
def sign(debs, key_id) -> None:
    """Write a detached signature <file>.deb.sig beside each .deb (for CI: sign after building).

    The .deb itself is not changed.  Hosts that trust the key (ship --trust-key)
    install only packages whose signature verifies; `publish` copies the
    signature into the pool beside the package.
    """
    from .pkgsig import sign as sign_lib

    for deb in debs:
        click.echo(f"signed {deb} with {key_id}: {sign_lib(deb, key_id)}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="debship", message="%(prog)s %(version)s")
def main() -> None:
    """debship: bundle scripts, configs and systemd units into one .deb, and ship it.

    Each command has its own --help.  `build-deb` and `ship` are the same
    commands as `debship build` and `debship ship`, under their short names.
    """


main.add_command(build_deb, "build")
main.add_command(ship, "ship")
main.add_command(apply, "apply")
main.add_command(diff, "diff")
main.add_command(publish, "publish")
main.add_command(phase, "phase")
main.add_command(cloud_init, "cloud-init")
main.add_command(init, "init")
main.add_command(status, "status")
main.add_command(sign, "sign")
