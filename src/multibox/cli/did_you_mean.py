"""Did-you-mean hints for the command line's errors: a flag written as key=value (Ultralytics' style), a
misspelt flag (difflib over the subcommand's own flags), a misspelt command or choice."""

from __future__ import annotations

import argparse
import difflib
import re


def command_parser(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``namespace`` holds ("data check": two levels down)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(namespace, action.dest, None) in action.choices:
            return command_parser(action.choices[getattr(namespace, action.dest)], namespace)
    return parser


def flag_hint(parser: argparse.ArgumentParser, namespace: argparse.Namespace, extras: list[str]) -> str:
    """" (did you mean --lr?)" for the first unknown flag close to one of the command's (difflib)."""
    flags = [o for a in command_parser(parser, namespace)._actions for o in a.option_strings if o.startswith("--")]
    for token in extras:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.split("=", 1)[0], flags, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def choice_hint(message: str) -> str:
    """" (did you mean train?)" for a misspelt command or choice."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if found is None:
        return ""
    close = difflib.get_close_matches(found.group(1), re.findall(r"'?([\w.-]+)'?", found.group(2)), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def key_value_hint(message: str) -> str:
    """Ultralytics writes options as key=value (`yolo train data=x.yaml`); here they are flags."""
    if "unrecognized arguments" not in message:
        return ""
    for token in message.split(":", 1)[1].split():
        key, eq, value = token.partition("=")
        if eq and key and not key.startswith("-"):
            return f" (did you mean --{key.replace('_', '-')} {value}?)"
    return ""
