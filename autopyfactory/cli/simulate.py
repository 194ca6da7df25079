"""``autopyfactory simulate``: the policy on given numbers, every step shown.

The same pure functions the cycle runs (``domain/policy.py``): the chain of ``--schedplugin`` with
the options of ``--set key=value`` (checked against the schema, as factory.conf is), and the CRIC
per-type cap as the factory applies it.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence

from autopyfactory.cli.command import EXIT_OK, Commands, UsageError, whole_number
from autopyfactory.config import schema
from autopyfactory.config.schema import Scope
from autopyfactory.domain.model import Decision, Demand, QueueStatus, Supply, plural
from autopyfactory.domain.policy import STEPS, PolicySettings, Situation, decide
from autopyfactory.domain.sharing import GroupCap, apply_group_caps

NOT_GIVEN = -1  # default of --pending (argparse does not run type= on non-string defaults)


def _count_or_unknown(text: str) -> int | None:
    """A count, or ``unknown`` (no data from PanDA or condor)."""
    return None if text.lower() in ("unknown", "none") else whole_number(text, 0)


def _non_negative(text: str) -> int:
    value = _count_or_unknown(text)
    if value is None:
        raise argparse.ArgumentTypeError("'unknown' is only allowed for --activated and --pending")
    return value


def register(commands: Commands) -> None:
    p = commands.add_parser("simulate", help="run the policy on given numbers and show every step")
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
    p.add_argument("--running", type=_non_negative, default=None, help="running pilots (default: --started)")
    p.add_argument(
        "--started",
        type=_non_negative,
        default=0,
        help="running pilots that started within pandaLag: their jobs may still be in PanDA's activated,"
        " so they count against it like pending ones",
    )
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
        choices=schema.RESOURCE_TYPE_NAMES,
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


def run(args: argparse.Namespace) -> int:
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
    running = args.started if args.running is None else args.running
    if args.started > running:
        raise ValueError(f"--started={args.started} is more than --running={running}")
    return Supply(idle=idle, running=running, held=held, total=args.total, started=args.started)


def simulate_settings(chain: str | None, assignments: Sequence[str]) -> PolicySettings:
    """PolicySettings from ``--schedplugin`` and ``--set key=value``, checked against the schema."""
    values: dict[str, object] = {}
    policy_keys = ["schedplugin", *(o.key for o in STEPS.options())]
    if chain is not None:
        assignments = [*assignments, f"schedplugin={chain}"]
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        option = schema.find(key.strip(), Scope.QUEUE)
        if not sep or option is None or option.key not in policy_keys:
            close = difflib.get_close_matches(key.strip(), policy_keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--set {assignment!r}: not a policy key{hint}")
        try:
            values[option.key] = option.parse(raw)
        except schema.UnknownPluginError as exc:
            close = difflib.get_close_matches(exc.name, exc.known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown plugin {exc.name!r}{hint}; known: {', '.join(exc.known)}") from None
        except ValueError as exc:
            raise ValueError(f"--set {assignment!r}: {exc}") from None
    return STEPS.settings(values)
