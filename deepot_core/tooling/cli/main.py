"""Argument parsing and dispatch; every user error ends as one line on stderr and exit status 2."""
import argparse
import sys

from . import apply as apply_cmd
from . import demo as demo_cmd
from . import fit as fit_cmd
from . import info as info_cmd
from .common import EXIT_USAGE, CliError

COMMANDS = (demo_cmd, fit_cmd, apply_cmd, info_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deepot_core",
        description="Deep Optimal Transport: move an MMSE restorer's outputs toward natural-image statistics.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    # Our errors (TransportInputError, TransportFileError, ImageFileError) subclass ValueError/OSError;
    # the rest of these come from torch, Pillow or the file system and are just as much the user's to fix.
    except (CliError, ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
