"""``autopyfactory queue disable|enable|list`` and ``autopyfactory pilots remove`` (see domain/control.py).

The commands only write ``<stateDir>/control.json`` (under its lock); the running daemon acts on
it from its next cycle. They refuse names that are neither a queue section, a PQ, nor a label the
factory knows (from its last state file), so a typo cannot silently disable nothing.

``pilots remove`` is carried out in the daemon's next cycle: one ``condor_rm`` per schedd with the
request and ``--reason`` as the pilots' RemoveReason; a request whose removal failed stays pending
(``queue list``) and the last cycle's note says why (``status``).
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import sys
import time
from pathlib import Path

from autopyfactory.cli.command import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Commands, add_config_option
from autopyfactory.config import loader as config
from autopyfactory.domain.control import (
    ControlError,
    Controls,
    Disable,
    Removal,
    add_removal,
    disable,
    enable,
    expire,
    format_time,
    parse_until,
)
from autopyfactory.edges.control import ControlStore, InvalidControlFile, new_removal_id
from autopyfactory.observers.state import STATE_FILE, StateError, read_state


def register(commands: Commands) -> None:
    """``queue`` and ``pilots``."""
    queue = commands.add_parser("queue", help="disable or enable a queue (label or PQ) at runtime")
    queue_actions = queue.add_subparsers(dest="action", metavar="ACTION", required=True)
    off = queue_actions.add_parser("disable", help="submit nothing for it from the next cycle")
    off.add_argument("name", metavar="PQ|LABEL")
    off.add_argument("--until", help="re-enable then: a duration (30m, 6h, 2d) or a UTC time (ISO 8601)")
    off.add_argument("--reason", default="", help="shown in status, the monitor and the log")
    on = queue_actions.add_parser("enable", help="submit for it again from the next cycle")
    on.add_argument("name", metavar="PQ|LABEL")
    queue_actions.add_parser("list", help="show disabled queues and pending pilot removals")
    for action in queue_actions.choices.values():
        _add_common(action)

    pilots = commands.add_parser("pilots", help="remove pilots at runtime (by label, PQ or CE)")
    pilot_actions = pilots.add_subparsers(dest="action", metavar="ACTION", required=True)
    remove = pilot_actions.add_parser("remove", help="remove matching pilots in the next cycle")
    remove.add_argument("--label", default="", help="this label's pilots")
    remove.add_argument("--pq", default="", help="the pilots of this PQ's labels")
    remove.add_argument("--ce", default="", help="the pilots sent to this CE (host or host:port)")
    remove.add_argument("--idle-only", action="store_true", help="only pilots that have not started")
    remove.add_argument(
        "--reason", default="", help="why: the pilots' RemoveReason (with the request), shown by the monitor"
    )
    _add_common(remove)


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--force", action="store_true", help="accept a name the factory does not know")


def run(args: argparse.Namespace) -> int:
    return run_queue(args) if args.command == "queue" else run_pilots(args)


def run_queue(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    store = ControlStore(Path(loaded.factory.identity.state_dir))
    now = time.time()
    try:
        if args.action == "list":
            print(describe(store.read(), now))
            return EXIT_OK
        _require_known(args.name, loaded, args.force)
        if args.action == "disable":
            until = _until(args.until, now)
            entry = Disable(args.name, args.reason, now, until, getpass.getuser())
            store.update(lambda c: disable(expire(c, now), entry))
            print(f"{args.name}: {entry.describe()}; the factory submits nothing for it from its next cycle")
        else:
            before = store.read()
            after = store.update(lambda c: enable(expire(c, now), args.name))
            was = any(d.name == args.name and d.active(now) for d in before.disabled)
            print(enabled_message(args.name, was, still_disabled(args.name, after, loaded, now)))
    except _Usage as exc:
        print(f"autopyfactory queue {args.action}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ControlError as exc:
        print(f"autopyfactory queue {args.action}: {_explain(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _explain(error: ControlError) -> str:
    """The error, and for a wrong control file what it does to the factory and how to get out."""
    if not isinstance(error, InvalidControlFile):
        return str(error)
    return f"{error}; the factory holds every queue back until the file is fixed or removed"


def enabled_message(name: str, was_disabled: bool, others: list[Disable]) -> str:
    """What ``queue enable NAME`` did, and which disables that hold the same pilots back remain
    (a label's own disable when its PQ was enabled, or its PQ's when the label was)."""
    if not others:
        return f"{name}: enabled" + ("" if was_disabled else " (it was not disabled)")
    held = "; ".join(f"{d.name} ({d.describe()})" for d in others)
    how = " and ".join(f"autopyfactory queue enable {d.name}" for d in others)
    done = "enabled" if was_disabled else "was not disabled itself"
    return f"{name}: {done}; still disabled: {held}; to submit for it again: {how}"


def still_disabled(name: str, controls: Controls, loaded: config.FactoryConfig, now: float) -> list[Disable]:
    """The active disables of the labels of PQ ``name``, or of the PQ of label ``name``."""
    pq_of = label_pqs(loaded)
    related = {label for label, pq in pq_of.items() if pq == name} | {pq_of.get(name, "")}
    return [d for d in controls.disabled if d.active(now) and d.name != name and d.name in related]


def run_pilots(args: argparse.Namespace) -> int:
    if not (args.label or args.pq or args.ce):
        print("autopyfactory pilots remove: give --label, --pq or --ce", file=sys.stderr)
        return EXIT_USAGE
    loaded = config.load(args.config)
    selectors = (args.label, args.pq, args.ce, args.idle_only)
    removal = Removal(new_removal_id(), time.time(), *selectors, by=getpass.getuser(), reason=args.reason)
    try:
        for name in (args.label, args.pq):
            if name:
                _require_known(name, loaded, args.force)
        ControlStore(Path(loaded.factory.identity.state_dir)).update(lambda c: add_removal(c, removal))
    except ControlError as exc:
        print(f"autopyfactory pilots remove: {_explain(exc)}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{removal.describe()}: requested; the factory carries it out in its next cycle")
    return EXIT_OK


def describe(controls: Controls, now: float) -> str:
    """The ``queue list`` text (also shown by ``status``)."""
    lines = [f"{d.name}: {d.describe()}" for d in controls.disabled if d.active(now)]
    lines += [
        f"{r.describe()}: requested by {r.by or '?'} at {format_time(r.requested)}, pending"
        for r in controls.removals
    ]
    return "\n".join(lines) or "no queue disabled, no pilot removal pending"


def _until(text: str | None, now: float) -> float | None:
    if text is None:
        return None
    try:
        return parse_until(text, now)
    except ValueError as exc:
        raise _Usage(f"--until: {exc}") from None


class _Usage(ControlError):
    pass


def known_names(loaded: config.FactoryConfig) -> set[str]:
    """Queue sections and PQs of the config, and the labels and PQs of the last state file."""
    names = {q.name for q in loaded.queues} | {q.pq for q in loaded.queues}
    pq_of = label_pqs(loaded)
    return names | set(pq_of) | set(pq_of.values())


def label_pqs(loaded: config.FactoryConfig) -> dict[str, str]:
    """Label -> PQ, as the last state file of the factory knows them (empty without one)."""
    try:
        record = read_state(Path(loaded.factory.identity.state_dir) / STATE_FILE)
    except StateError:
        return {}
    return {name: label.pq for name, label in record.labels.items()}


def _require_known(name: str, loaded: config.FactoryConfig, force: bool) -> None:
    names = known_names(loaded)
    sections = {q.name for q in loaded.queues}
    if force or name in names or any(name.startswith(f"{s}-") for s in sections):
        return
    close = difflib.get_close_matches(name, sorted(names), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ControlError(f"{name!r} is no queue, PQ or label of this factory{hint}; --force to use it anyway")
