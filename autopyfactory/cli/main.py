"""The ``autopyfactory`` command: argument parsing and dispatch to the subcommands.

Exit codes: 0 success, 1 configuration or runtime error, 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from autopyfactory import __version__
from autopyfactory.cli import control as control_cli
from autopyfactory.cli import preflight
from autopyfactory.cli import status as status_check
from autopyfactory.cli.demo import add_demo_arguments
from autopyfactory.cli.options import add_config_option
from autopyfactory.config import apf2 as apf2_migrate
from autopyfactory.config import loader as config
from autopyfactory.config import schema as config_schema
from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.config.schema import Scope
from autopyfactory.cron import reports as pilot_reports
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Decision, Demand, QueueStatus, Supply, plural
from autopyfactory.domain.policy import STEPS, GroupCap, PolicySettings, Situation, apply_group_caps, decide
from autopyfactory.edges.credentials import voms_actimeleft
from autopyfactory.edges.http import make_session, total_deadline
from autopyfactory.edges.schedconfig import SchedconfigError, SchedconfigSource
from autopyfactory.runtime import daemon, logs
from autopyfactory.runtime.service import RunOptions, Service, install_signal_handlers
from autopyfactory.runtime.systemd import Notifier

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
NOT_GIVEN = -1  # default of simulate --pending (argparse does not run type= on non-string defaults)


class UsageError(Exception):
    """Bad command-line input that argparse could not catch itself."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"autopyfactory {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except config.ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autopyfactory", description="Pilot factory for the PanDA workload system."
    )
    parser.add_argument("--version", action="version", version=f"autopyfactory {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # -v also after the command; SUPPRESS keeps a subcommand's default from hiding a top-level -v
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    commands = _Subcommands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)

    check = commands.add_parser(
        "check",
        help="the go-live gate: configuration, schedconfig, credentials, wrapper, placeholders;"
        " one line per label (-v: every setting and where it came from)",
    )
    add_config_option(check)
    check.add_argument("--schedconfig", help="use this dump (URL or path) instead of the configured one")
    check.add_argument(
        "--online", action="store_true", help="also ask PanDA, schedconfig and the monitor (token accepted?)"
    )
    check.add_argument("--json", action="store_true", help="print labels and findings as JSON")
    check.add_argument(
        "--config-only",
        action="store_true",
        help="only read factory.conf and queuesDir, as a reload does (exit 1 on any error)",
    )
    check.set_defaults(handler=run_check)

    run = commands.add_parser("run", help="run the factory: poll PanDA and HTCondor, submit pilots")
    add_config_option(run)
    how_long = run.add_mutually_exclusive_group()
    how_long.add_argument("--once", action="store_true", help="run one cycle and exit")
    how_long.add_argument("--cycles", type=_positive, help="run this many cycles and exit")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="read everything, submit nothing, send nothing to the monitor; write only to a directory"
        " of its own (printed)",
    )
    run.add_argument("--dry-run-dir", default="", help="that directory (default: a new one in $TMPDIR)")
    run.add_argument("--schedconfig", help="use this dump (URL or path) instead of the configured one")
    run.add_argument("--log-file", default="", help="log here (reopened after logrotate) instead of stderr")
    run.add_argument(
        "--pidfile", default="", help="locked pidfile: a second factory with it refuses to start"
    )
    run.add_argument("--daemon", action="store_true", help="detach from the terminal (not under systemd)")
    run.add_argument("--runas", default="", help="drop root privileges to this user")
    run.set_defaults(handler=run_factory)

    status = commands.add_parser(
        "status", help="show each label's last cycle, as the running factory wrote it"
    )
    add_config_option(status)
    status_check.add_arguments(status)
    status.set_defaults(handler=status_check.run_status)

    demo = commands.add_parser(
        "demo", help="run PanDA/CRIC stand-ins, the monitor and the factory on this host"
    )
    add_demo_arguments(demo)
    demo.set_defaults(handler=_run_demo)

    simulate = commands.add_parser("simulate", help="run the policy on given numbers and show every step")
    _add_simulate_arguments(simulate)
    simulate.set_defaults(handler=run_simulate)

    reference = commands.add_parser("config-reference", help="print the configuration reference (markdown)")
    reference.add_argument("--readme", help="rewrite the reference block in this README instead of printing")
    reference.set_defaults(handler=run_config_reference)

    control_cli.add_commands(commands)
    apf2_migrate.add_command(commands)

    for name, text in (
        ("mon-exiting", "cron: report finished, removed and vanished pilots to the monitor"),
        ("mon-stale", "cron: flag pilots idle or running too long at the monitor (staleRemove: condor_rm)"),
    ):
        helper = commands.add_parser(name, help=text)
        add_config_option(helper)
        helper.set_defaults(handler=pilot_reports.run_command)
    return parser


class _Subcommands:
    """``add_subparsers`` whose every command also takes the common options."""

    def __init__(
        self, actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
    ) -> None:
        self._actions, self._common = actions, common
        self.choices = actions.choices

    def add_parser(self, name: str, **kwargs: str) -> argparse.ArgumentParser:
        return self._actions.add_parser(name, parents=[self._common], **kwargs)  # type: ignore[arg-type]


# --- run -------------------------------------------------------------------------------------


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        rule = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def _positive(text: str) -> int:
    return _whole_number(text, 1)


def run_factory(args: argparse.Namespace) -> int:
    handler = logs.setup_logging(args.log_file, args.verbose)
    path = Path(args.config)
    loaded = config.load(path)
    for error in loaded.errors:
        logging.getLogger("autopyfactory").error("%s", error)
    options = RunOptions(
        1 if args.once else args.cycles, args.dry_run, args.schedconfig or "", _dry_run_dir(args)
    )
    pidfile = daemon.PidFile(Path(args.pidfile)) if args.pidfile else None
    try:
        if args.runas:
            daemon.user_ids(args.runas)  # fail early, before detaching, on an unknown user
        if args.daemon:
            with daemon.detach(pidfile, logs.stream_fileno(handler)):
                return _serve(path, loaded, options, args.runas, Notifier(None))
        if pidfile:
            pidfile.acquire()
        return _serve(path, loaded, options, args.runas, Notifier(os.environ.get("NOTIFY_SOCKET")))
    except daemon.DaemonError as exc:
        print(f"autopyfactory run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if pidfile and not args.daemon:
            pidfile.release()


def _dry_run_dir(args: argparse.Namespace) -> str:
    """The dry run's own directory, created and announced; "" for a real run."""
    if args.dry_run_dir and not args.dry_run:
        raise UsageError("--dry-run-dir needs --dry-run")
    if not args.dry_run:
        return ""
    try:
        if args.dry_run_dir:
            Path(args.dry_run_dir).mkdir(parents=True, exist_ok=True)
            directory = str(Path(args.dry_run_dir).resolve())
        else:
            directory = tempfile.mkdtemp(prefix="autopyfactory-dry-run-")
    except OSError as exc:
        raise UsageError(f"cannot create the dry run's directory: {exc}") from None
    print(
        f"dry run: nothing is submitted or sent to the monitor; submit files and the state go to {directory}",
        flush=True,
    )
    return directory


def _serve(
    path: Path, loaded: config.FactoryConfig, options: RunOptions, runas: str, notifier: Notifier
) -> int:
    if runas:
        daemon.drop_privileges(runas)
    service = Service(path, loaded, options, notifier)
    install_signal_handlers(service)
    service.run()
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  (the monitor extra)
    except ImportError:
        print("autopyfactory demo needs the monitor extra: pip install '.[monitor]'", file=sys.stderr)
        return EXIT_ERROR
    from autopyfactory.demo.run import run_demo

    logs.setup_logging("", args.verbose)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    return run_demo(args)


# --- config-reference -----------------------------------------------------------------------

README_START, README_END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def run_config_reference(args: argparse.Namespace) -> int:
    reference = config_schema.reference_markdown()
    if not args.readme:
        print(reference, end="")
        return EXIT_OK
    path = Path(args.readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise UsageError(f"{path} has no {README_START} ... {README_END} block")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(f"{head}{README_START}\n\n{reference.rstrip()}\n\n{README_END}{tail}")
    return EXIT_OK


# --- check -----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    if args.config_only:
        return check_config_only(loaded)
    f = loaded.factory
    location = args.schedconfig or f.schedconfig.location
    session = make_session(
        f.http.retries, f.http.proxy, f.http.ca_path, deadline=total_deadline(f.http.timeout, f.http.retries)
    )
    source = SchedconfigSource(
        location, f.schedconfig_cache_path, 0, session, f.http.timeout, time.time, keep_copy=False
    )
    try:
        snapshot = source.get()
        dump, origin = snapshot.data, snapshot.source
        schedconfig = f"{len(dump)} queues from {origin}"
    except SchedconfigError as exc:
        dump, origin, schedconfig = None, "", str(exc)
    result = build_labels(loaded, dump)
    findings = [
        *(preflight.Finding(preflight.ERROR, problem) for problem in result.problems),
        *(preflight.Finding(preflight.WARNING, warning) for warning in result.warnings),
        *preflight.config_findings(loaded, result.labels, datetime.now(UTC), voms_actimeleft),
    ]
    if args.online:
        findings += preflight.online_findings(loaded, session, origin, location)
    if args.json:
        print(json.dumps(check_json(schedconfig, dump is not None, result.labels, findings), indent=1))
    else:
        print_check(schedconfig, result.labels, findings, args.verbose)
    failed = dump is None or any(finding.level == preflight.ERROR for finding in findings)
    return EXIT_ERROR if failed else EXIT_OK


def check_json(
    schedconfig: str, have_dump: bool, labels: Sequence[Label], findings: Sequence[preflight.Finding]
) -> dict[str, object]:
    return {
        "schedconfig": {"ok": have_dump, "message": schedconfig},
        "labels": [preflight.label_json(label) for label in labels],
        "findings": [finding.to_json() for finding in findings],
        "errors": sum(1 for finding in findings if finding.level == preflight.ERROR),
        "warnings": sum(1 for finding in findings if finding.level == preflight.WARNING),
    }


def print_check(
    schedconfig: str, labels: Sequence[Label], findings: Sequence[preflight.Finding], verbose: bool
) -> None:
    """One line per label (every setting with its provenance when verbose), then the findings."""
    print(f"schedconfig: {schedconfig}")
    for label in labels:
        if verbose:
            print_label(label)
        else:
            print(preflight.summary_line(label))
    levels = (preflight.OK, preflight.WARNING, preflight.ERROR)
    for level in levels:
        for finding in findings:
            if finding.level == level:
                print(f"{level}: {finding.message}")
    errors, warnings = (sum(1 for f in findings if f.level == level) for level in levels[2:0:-1])
    print(f"{plural(len(labels), 'label')}, {plural(errors, 'error')}, {plural(warnings, 'warning')}")


def check_config_only(loaded: config.FactoryConfig) -> int:
    """What a SIGHUP reload would do with this config: any error, a queue section's too, rejects it."""
    if loaded.errors:
        errors = "\n".join(str(error) for error in loaded.errors)
        print(f"configuration error:\n{errors}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{loaded.path}: configuration ok, {plural(len(loaded.queues), 'queue section')}")
    return EXIT_OK


def print_label(label: Label) -> None:
    r = label.resources
    print(
        f"\n[{label.name}]  PQ={label.pq} CE={label.ce.flavour} {label.ce.endpoint}"
        f" queue={label.ce.queue or '-'} status={label.status.value} batch={label.batch}"
    )
    print(
        f"  effective resources: corecount={r.corecount} maxrss={r.maxrss} MB maxtime={r.maxtime} s"
        f" (after the CE's own limit) maxwdir={r.maxwdir} MB"
    )
    print_demand(label)
    width = max(len(key) for key in label.settings)
    for key, setting in sorted(label.settings.items(), key=lambda item: item[0].lower()):
        shown = preflight.show(setting.value)
        where = "" if setting.origin == "built-in" else f"  ({setting.origin})"
        print(f"  {key:<{width}}  {setting.source.value:<13}  {shown}{where}")


def print_demand(label: Label) -> None:
    """Which PanDA jobs count for the label, and the PQ's CRIC caps (issue 12)."""
    rt = label.resource_type or "any (counts every job)"
    sized = " (sized for it)" if label.resource_type else ""
    jobs = ", ".join(label.job_labels) or "any"
    print(f"  demand: resource type {rt}{sized}, job labels {jobs}")
    limits = label.limits
    caps = [f"resource_type_limits.{t}={n}" for t, n in sorted(limits.resource_type_limits.items())]
    if limits.max_new_per_cycle is not None:
        caps.append(f"maxNewWorkersPerCycle={limits.max_new_per_cycle}")
    if limits.queue_limit is not None:
        caps.append(f"nQueueLimitWorker={limits.queue_limit}")
    if caps:
        print(f"  CRIC caps of the PQ: {' '.join(caps)}")


# --- simulate --------------------------------------------------------------------------------


def _count_or_unknown(text: str) -> int | None:
    """A count, or ``unknown`` (no data from PanDA or condor)."""
    return None if text.lower() in ("unknown", "none") else _whole_number(text, 0)


def _non_negative(text: str) -> int:
    value = _count_or_unknown(text)
    if value is None:
        raise argparse.ArgumentTypeError("'unknown' is only allowed for --activated and --pending")
    return value


def _add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--activated",
        type=_count_or_unknown,
        default=0,
        help="activated jobs (this label's share); 'unknown' = PanDA data missing",
    )
    p.add_argument(
        "--pending",
        type=_count_or_unknown,
        default=NOT_GIVEN,
        help="idle + held pilots; 'unknown' = condor data missing (default: --idle + --held)",
    )
    p.add_argument("--idle", type=_non_negative, default=None, help="idle pilots (default: pending - held)")
    p.add_argument("--held", type=_non_negative, default=0)
    p.add_argument("--running", type=_non_negative, default=0)
    p.add_argument(
        "--total", type=_non_negative, default=None, help="all pilots (default: pending + running)"
    )
    p.add_argument("--transferring", type=_non_negative, default=0)
    p.add_argument(
        "--status", default="online", help="online, brokeroff, test, offline, standby, maintenance"
    )
    p.add_argument("--cycle", type=_non_negative, default=0)
    p.add_argument("--schedplugin", default=None, help="comma-separated plugin chain (default: Classic)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a queue policy key, e.g. sched.maxpending.maximum=25 (repeatable)",
    )
    p.add_argument(
        "--resource-type",
        type=str.upper,
        choices=config_schema.RESOURCE_TYPE_NAMES,
        default=None,
        help="the label's resource type; with --type-limit its CRIC resource_type_limits cap applies",
    )
    p.add_argument("--type-limit", type=_non_negative, default=None, help="CRIC resource_type_limits.<TYPE>")
    p.add_argument(
        "--type-pilots",
        type=_count_or_unknown,
        default=0,
        help="pilots of that type at the PQ ('unknown' allowed)",
    )
    p.add_argument("--json", action="store_true", help="print the decision as JSON")


def run_simulate(args: argparse.Namespace) -> int:
    try:
        status = QueueStatus.from_schedconfig(args.status)
        policy = simulate_settings(args.schedplugin, args.settings)
        situation = Situation(status, _demand(args), _supply(args), args.cycle)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    decision = _type_limit(args, decide(policy, situation))
    if args.json:
        steps = [{"plugin": s.plugin, "in": s.inp, "out": s.out, "reason": s.reason} for s in decision.steps]
        print(json.dumps({"n": decision.n, "steps": steps}))
    else:
        for step in decision.steps:
            print(step.render())
        print(f"=> {plural(decision.n, 'pilot')}")
    return EXIT_OK


def _type_limit(args: argparse.Namespace, decision: Decision) -> Decision:
    """The CRIC per-type cap, as the factory applies it to the PQ's labels of that type."""
    if args.type_limit is None:
        return decision
    if args.resource_type is None:
        raise UsageError("--type-limit needs --resource-type")
    pilots = args.type_pilots
    capacity = None if pilots is None else args.type_limit - pilots
    why = f"{args.resource_type} limit={args.type_limit} pilots={'unknown' if pilots is None else pilots}"
    return apply_group_caps(
        {"label": decision}, [GroupCap("ResourceTypeLimit", ("label",), capacity, why)], 0
    )["label"]


def _demand(args: argparse.Namespace) -> Demand | None:
    return None if args.activated is None else Demand(args.activated, args.transferring)


def _supply(args: argparse.Namespace) -> Supply | None:
    pending, held = args.pending, args.held
    if pending is None:
        return None
    if args.idle is not None:
        if pending != NOT_GIVEN and pending != args.idle + held:
            raise ValueError(f"--pending={pending} is not --idle + --held = {args.idle + held}")
        idle = args.idle
    elif pending == NOT_GIVEN:
        idle = 0
    elif held > pending:
        raise ValueError(f"--held={held} is more than --pending={pending}")
    else:
        idle = pending - held
    return Supply(idle=idle, running=args.running, held=held, total=args.total)


def simulate_settings(chain: str | None, assignments: Sequence[str]) -> PolicySettings:
    """PolicySettings from ``--schedplugin`` and ``--set key=value``, checked against the schema."""
    values: dict[str, object] = {}
    policy_keys = ["schedplugin", *(o.key for o in STEPS.options())]
    if chain is not None:
        assignments = [*assignments, f"schedplugin={chain}"]
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        option = config_schema.find(key.strip(), Scope.QUEUE)
        if not sep or option is None or option.key not in policy_keys:
            close = difflib.get_close_matches(key.strip(), policy_keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--set {assignment!r}: not a policy key{hint}")
        try:
            values[option.key] = option.parse(raw)
        except config_schema.UnknownPluginError as exc:
            close = difflib.get_close_matches(exc.name, exc.known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown plugin {exc.name!r}{hint}; known: {', '.join(exc.known)}") from None
        except ValueError as exc:
            raise ValueError(f"--set {assignment!r}: {exc}") from None
    return STEPS.settings(values)
