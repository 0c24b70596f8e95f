"""``ptychopinn-ptychodus training-data``: one PtychoPINN training NPZ from files Ptychodus reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..facts.quantities import ExportMeta
from .console import ProgressBar
from .convert import _Q, _add_quantity_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('diffraction', type=Path, help='diffraction file (any Ptychodus diffraction reader)')
    parser.add_argument(
        '-o', '--output', type=Path, required=True, metavar='NPZ', help='training NPZ to write'
    )
    parser.add_argument(
        '--diffraction-reader', metavar='NAME', help='reader simple name (default: by extension)'
    )
    for what in ('product', 'positions', 'probe', 'object', 'bad-pixels'):
        parser.add_argument(f'--{what}', type=Path, metavar='FILE', help=f'{what} file')
        parser.add_argument(f'--{what}-reader', metavar='NAME', help=f'{what} reader simple name')
    parser.add_argument('--crop', type=int, metavar='N',
                        help="square crop, centred on the reader's beam centre, else the pattern centre "
                             '(default: whole pattern)')
    parser.add_argument('--counts', action='store_true', help='store photon counts, not amplitudes')
    parser.add_argument('--keep-probe-modes', action='store_true', help='also store all modes as probe_modes')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    _add_quantity_arguments(parser.add_argument_group('physics where the files lack them'))


def run(args: argparse.Namespace) -> int:
    from ..host.training import TrainingSources, export_training_data

    values = {d[len(_Q):]: v for d, v in vars(args).items() if d.startswith(_Q) and v is not None}
    meta = ExportMeta.from_mapping(values, source='command line')
    sources = TrainingSources(
        args.diffraction, args.diffraction_reader, args.product, args.product_reader, args.positions,
        args.positions_reader, args.probe, args.probe_reader, args.object, args.object_reader,
        args.bad_pixels, args.bad_pixels_reader,
    )
    bar = ProgressBar(args.diffraction.name)
    show = not args.quiet and sys.stderr.isatty()
    try:
        report = export_training_data(
            sources, args.output, crop_px=args.crop, meta=meta, counts=args.counts,
            keep_probe_modes=args.keep_probe_modes, overwrite=args.overwrite,
            progress=bar.start if show else None,
        )
    finally:
        bar.close()
    print(f'wrote {report.path}: {report.patterns} patterns of {report.pattern_px[0]}x{report.pattern_px[1]} '
          f'({report.domain}) under diff3d')
    for note in report.notes:
        print(f'note: {note}')
    return 0
