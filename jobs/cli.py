"""The ``riskwatch`` command line: one sub-command per module in ``jobs.commands``."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from jobs import commands
from pipelines.runners import fewer_collections


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="riskwatch",
        description="RiskWatch: risk early warning from 12345, 110 and grid feeds. "
        "Unknown --options are passed to Apache Beam (e.g. --runner, --setup_file).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers = {}
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        handlers[module.NAME] = module.run
    return parser, handlers


def parse(argv: list[str] | None = None):
    """argv → (RiskWatch's arguments, the rest for Beam). A ``--`` separating Beam's options (as in
    ``riskwatch batch … -- --runner=FlinkRunner``) is dropped: Beam would ignore every option after it."""
    parser, handlers = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    return parser, handlers, args, [a for a in beam_args if a != "--"]


def main(argv: list[str] | None = None) -> int:
    parser, handlers, args, beam_args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Beam and GX are chatty at INFO; their warnings still show.
    for noisy in ("apache_beam", "great_expectations", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.command:
        parser.print_help()
        return 2
    with fewer_collections():
        return int(handlers[args.command](args, beam_args) or 0)


if __name__ == "__main__":
    sys.exit(main())
