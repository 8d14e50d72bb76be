"""The `multibox` command line: :mod:`.parser` builds the one parser, :mod:`.commands` turns each
command's flags into one call of :mod:`multibox.jobs`. Nothing here computes.

User mistakes (:class:`multibox.errors.UserError`, bad flags) print one line and exit with code 2;
faults of the environment (permissions, a full disk) one line and code 1; Ctrl-C / SIGTERM say what was
saved and exit with 130.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from multibox.cli.commands import COMMANDS, TRAIN_FLAGS
from multibox.cli.parser import build_parser
from multibox.errors import EnvironmentFault, Interrupted, JobFailed, TrainingDiverged, UserError
from multibox.threads import set_threads

FLAG_OF_ROLE = {"localizer": "model"}  # what the library calls an input -> its flag, where the two differ


def name_flag(message: str, args: argparse.Namespace) -> str:
    """The library names the file or value it could not use ("runs/x/model.pt: no such checkpoint", or
    with its role, "classifier runs/x/model.pt: ..."); the CLI names the flag that gave it instead."""
    for dest, value in vars(args).items():
        if not isinstance(value, str) or not value or dest in {"command", "action"}:
            continue
        flag = f"--{dest.replace('_', '-')} {value}:"
        roles = [role for role, d in FLAG_OF_ROLE.items() if d == dest] + [dest]
        for role in roles:
            if message.startswith(f"{role} {value}:"):
                return flag + message[len(f"{role} {value}:"):]
        if message.startswith(f"{value}:"):
            return flag + message[len(f"{value}:"):]
    for dest, value in vars(args).items():  # the library named the parameter ("classes: unknown class 'x'")
        if value is not None and dest not in {"command", "action"} and message.startswith(f"{dest}:"):
            return f"--{dest.replace('_', '-')}:" + message[len(f"{dest}:"):]
    return message


def flag_of_key(message: str, args: argparse.Namespace) -> str:
    """Config keys the flags set ("model.backbone") named by their flag ("--backbone"), unless the
    message is about the --config file (where the key is what the user wrote)."""
    config = getattr(args, "config", None)
    if config and message.startswith(f"{config}:"):
        return message
    message = message.removeprefix("command line: ")
    for flag, (section, name) in TRAIN_FLAGS.items():
        message = re.sub(rf"\b{section}\.{name}\b", f"--{flag.replace('_', '-')}", message)
    return message


def role_hint(message: str, args: argparse.Namespace) -> str:
    """A classifier checkpoint given as --model: where it goes instead."""
    if "holds a classifier, not a localizer" not in message or not getattr(args, "model", None):
        return ""
    if hasattr(args, "classifier"):
        return "; pass it with --classifier, and a localizer checkpoint as --model"
    return "; a classifier is scored with a localizer: multibox detect --model LOCALIZER --classifier CLASSIFIER"


def interrupted_message(exc: Interrupted, args: argparse.Namespace) -> str:
    """What Ctrl-C / SIGTERM left behind: the checkpoint written and the command to continue, or nothing."""
    if exc.checkpoint is None:
        return f"interrupted ({exc.signal_name}); nothing was written"
    run = Path(exc.checkpoint).parent
    return (f"interrupted ({exc.signal_name}) at step {exc.step}: saved {exc.checkpoint}; continue with: "
            f"multibox {args.command} --out {run} --resume")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_threads(getattr(args, "threads", None))  # --threads, else this process's share of the CPUs it may use
        if getattr(args, "max_pixels", None) is not None:  # --max-pixels: the limit of every image this run reads
            from multibox.data.images import set_max_pixels

            set_max_pixels(args.max_pixels)
        return COMMANDS[args.command](args)
    except UserError as exc:  # EnvironmentFault (a full disk, a read-only folder): the machine's, exit 1
        message = name_flag(flag_of_key(str(exc), args), args) + role_hint(str(exc), args)
        print(f"multibox {args.command}: error: {message}", file=sys.stderr)
        return 1 if isinstance(exc, EnvironmentFault) else 2
    except (TrainingDiverged, JobFailed) as exc:
        print(f"multibox {args.command}: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"multibox {args.command}: {interrupted_message(exc, args)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"multibox {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment (permissions, full disk, a vanished folder): exit 1, one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"multibox {args.command}: error: {where}{(exc.strerror or str(exc)).lower()}", file=sys.stderr)
        return 1
