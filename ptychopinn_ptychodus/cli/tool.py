"""``ptychopinn-ptychodus``: one command, one subcommand per job (doctor, bridge management, ...).

Each subcommand is a row of :data:`SUBCOMMANDS`: its name, one line of help, a
function adding its arguments and a function running it and returning the exit
status. A new subcommand is a new row; this module turns exceptions into exit
codes for all of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..facts.errors import PtychoPINNError
from ..host import doctor
from . import check as check_command
from . import training

PROG = 'ptychopinn-ptychodus'


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def _force_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--force', action='store_true', help='replace a bridge that is already there')


def _run_doctor(args: argparse.Namespace) -> int:
    checks = doctor.diagnose()
    for check in checks:
        print(f'{"ok  " if check.ok else "FAIL"}  {check.what}')
        if not check.ok and check.fix:
            print(f'        fix: {check.fix}')
    healthy = all(check.ok for check in checks)
    healthy_text = 'Ptychodus discovers every PtychoPINN reader and writer.'
    print(healthy_text if healthy else 'Problems found; see the fixes above.')
    return 0 if healthy else 1


def _run_install_bridge(args: argparse.Namespace) -> int:
    print(f'installed {doctor.install_bridge(args.force)}; undo with `{PROG} remove-bridge`')
    return 0


def _run_remove_bridge(args: argparse.Namespace) -> int:
    removed = doctor.remove_bridge()
    print(f'removed {removed}' if removed else 'no bridge to remove')
    return 0


SUBCOMMANDS: list[Subcommand] = [
    Subcommand('doctor', 'check that Ptychodus discovers our readers and writers',
               _no_arguments, _run_doctor),
    Subcommand('install-bridge', 'copy the bridge into Ptychodus (editable installs)',
               _force_argument, _run_install_bridge),
    Subcommand('remove-bridge', 'remove a bridge copied by install-bridge',
               _no_arguments, _run_remove_bridge),
    Subcommand('training-data', 'one PtychoPINN training NPZ from any files Ptychodus reads',
               training.add_arguments, training.run),
    Subcommand('check', 'what Ptychodus will see in NPZ files and products, and what is wrong',
               check_command.add_arguments, check_command.run),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description='PtychoPINN data in Ptychodus: tools.')
    sub = parser.add_subparsers(dest='command', required=True)
    for entry in SUBCOMMANDS:
        entry.add_arguments(sub.add_parser(entry.name, help=entry.help, description=entry.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    entry = next(e for e in SUBCOMMANDS if e.name == args.command)
    try:
        return entry.run(args)
    except PtychoPINNError as exc:  # our errors already name the file and the problem
        print(f'{PROG} {entry.name}: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'{PROG} {entry.name}: interrupted', file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
