"""The `multibox` command line: :mod:`.parser` builds the one parser, :mod:`.commands` turns each
command's flags into one call of :mod:`multibox.jobs`. Nothing here computes.

User mistakes (:class:`multibox.errors.UserError`, bad flags) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

from multibox.cli.commands import COMMANDS
from multibox.cli.parser import build_parser
from multibox.errors import TrainingDiverged, UserError

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
    return message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"multibox {args.command}: error: {name_flag(str(exc), args)}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"multibox {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"multibox {args.command}: interrupted (a checkpoint was saved where training had started)", file=sys.stderr)
        return 130


