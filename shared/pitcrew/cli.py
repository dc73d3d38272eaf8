"""The ``pitcrew`` command: validate configuration, run the local stack, invoke one handler.

Each subcommand imports what it needs only when it runs, so ``pitcrew --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _config_validate(args: argparse.Namespace) -> int:
    from pitcrew.config import validate_file

    problems, source = validate_file(args.file)
    if problems:
        print(f"{source}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{source}: ok")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pitcrew import __version__

    parser = argparse.ArgumentParser(prog="pitcrew", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pitcrew {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="work with the pitcrew configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser(
        "validate", help="check a configuration file and print every problem"
    )
    validate.add_argument(
        "file",
        nargs="?",
        default=None,
        help="a YAML file or ssm:/name (default: $PITCREW_CONFIG, else infra/local/pitcrew.yaml)",
    )
    validate.set_defaults(run=_config_validate)

    # The local runtime's commands (local, invoke, demo); registering them imports no moto.
    from pitcrew.local.cli import register

    register(commands)

    # Cost watch's report (imports nothing heavy until it runs).
    from pitcrew.costs.cli import register as register_costs

    register_costs(commands)

    # promote, approve, reject, promotions, environments, rollback (through the API).
    from pitcrew.promotions.cli import register as register_promotions

    register_promotions(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
