"""``ptychopinn-ptychodus check FILE...``: one readable report per file of what Ptychodus will see.

Exit status 0 when every file is clean (no problem; warnings such as stand-in
pixel sizes do not count unless ``--strict``), 1 otherwise. ``--json`` prints
one JSON document (a list of reports) for scripts; ``--fix OUT`` writes a
corrected copy of a single FILE where the fix is known.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..convert.check import PROBLEM, WARNING, FileReport, check_file, fix_file
from ..facts.errors import RunError

MARKS = {'info': '  ', 'warning': '! ', 'problem': 'X '}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('files', type=Path, nargs='+', metavar='FILE',
                        help="PtychoPINN NPZ files and product HDF5 files (ours, Ptychodus's, "
                             "PtychoPINN's exporter's)")
    parser.add_argument('--json', action='store_true', help='print the reports as one JSON list')
    parser.add_argument('--fix', type=Path, metavar='OUT',
                        help='write a corrected copy of the (single) FILE to OUT where the fix is known')
    parser.add_argument('--overwrite', action='store_true', help='with --fix: replace an existing OUT')
    parser.add_argument('--strict', action='store_true', help='warnings (e.g. stand-in defaults) also fail')
    parser.add_argument('--no-physics', action='store_true', help='skip the placement test (faster)')


def _failed(report: FileReport, strict: bool) -> bool:
    return not report.clean or (strict and any(f.severity == WARNING for f in report.findings))


def format_report(report: FileReport) -> str:
    """The human-readable report of one file."""
    lines = [f'{report.path}', f'  producer: {report.producer}' + (f' ({report.producer_why})'
                                                                    if report.producer_why else '')]
    shapes = ', '.join(f'{k} {tuple(v) if v is not None else "-"}' for k, v in report.shapes.items())
    if shapes:
        lines.append(f'  shapes: {shapes}')
    for label, text in report.facts.items():
        lines.append(f'  {label}: {text}')
    if report.pixel_sizes:
        lines.append('  sizes and physics:')
        for item in report.pixel_sizes:
            lines.append(f'    {item["name"]} = {item["value"]:.6g} [{item["source"]}]')
    if report.physics is not None:
        lines.append(f'  placement: {report.physics["sentence"]}')
    for finding in report.findings:
        lines.append(f'  {MARKS.get(finding.severity, "  ")}{finding.severity}: {finding.what}')
        if finding.why:
            lines.append(f'      why: {finding.why}')
        if finding.fix and finding.severity != 'info':
            lines.append(f'      fix: {finding.fix}')
    problems = sum(f.severity == PROBLEM for f in report.findings)
    warnings = sum(f.severity == WARNING for f in report.findings)
    verdict = 'clean' if report.clean else f'{problems} problem{"s" if problems != 1 else ""}'
    if warnings:
        verdict += f', {warnings} warning{"s" if warnings != 1 else ""}'
    if not report.clean:
        verdict += ('; check --fix OUT can repair it' if report.fixable else '; no automatic fix')
    lines.append(f'  => {verdict}')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> int:
    if args.fix is not None and len(args.files) != 1:
        raise RunError(None, f'--fix OUT takes exactly one FILE, not {len(args.files)}')
    reports = [check_file(path, check_terminates=True, placement_test=not args.no_physics)
               for path in args.files]
    status = 1 if any(_failed(r, args.strict) for r in reports) else 0
    output: Any = [r.to_json() for r in reports]
    if args.fix is not None:
        result = fix_file(args.files[0], args.fix, overwrite=args.overwrite, report=reports[0],
                          check_terminates=True)
        status = 1 if _failed(result.report, args.strict) else 0
        output = {'checked': output[0], 'fixed': {'output': result.output, 'changes': result.changes,
                                                  'report': result.report.to_json()}}
        if not args.json:
            print(format_report(reports[0]))
            print(f'\nwrote {result.output}:')
            for change in result.changes:
                print(f'  - {change}')
            print()
            print(format_report(result.report))
    elif not args.json:
        print('\n\n'.join(format_report(r) for r in reports))
    if args.json:
        json.dump(output, sys.stdout, indent=2, default=str)
        print()
    return status
