"""``ptychopinn-ptychodus training-data``: one PtychoPINN training NPZ from files Ptychodus reads."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..convert.batch import batch_executor
from ..facts.errors import RunError
from ..facts.quantities import ExportMeta
from .console import ProgressBar
from .convert import _Q, _add_quantity_arguments

_SOURCES = ('product', 'positions', 'probe', 'object', 'bad-pixels')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('diffraction', type=Path, nargs='+',
                        help='diffraction file(s), any Ptychodus reader; several need --output-dir')
    parser.add_argument('-o', '--output', type=Path, metavar='NPZ', help='training NPZ to write (one input)')
    parser.add_argument('--output-dir', type=Path, metavar='DIR',
                        help='batch: folder for <stem>.npz, one per diffraction file')
    parser.add_argument(
        '--diffraction-reader', metavar='NAME', help='reader simple name (default: by extension)'
    )
    for what in ('product', 'positions', 'probe', 'object', 'bad-pixels'):
        parser.add_argument(f'--{what}', type=Path, nargs='+', metavar='FILE',
                            help=f'{what} file (batch: one for all, or one per diffraction file, in order)')
        parser.add_argument(f'--{what}-reader', metavar='NAME', help=f'{what} reader simple name')
    parser.add_argument('--crop', type=int, metavar='N',
                        help="square crop, centred on the reader's beam centre, else the pattern centre "
                             '(default: whole pattern)')
    parser.add_argument('--counts', action='store_true', help='store photon counts, not amplitudes')
    parser.add_argument('--keep-probe-modes', action='store_true', help='also store all modes as probe_modes')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    parser.add_argument('--jobs', type=int, default=1, help='batch: files exported in parallel')
    parser.add_argument('--dask-scheduler', metavar='ADDRESS',
                        help='batch on a Dask cluster (e.g. tcp://host:8786; needs the [dask] extra)')
    _add_quantity_arguments(parser.add_argument_group('physics where the files lack them'))


def _usage(problem: str) -> RunError:
    """A request we refuse before reading anything (one line, like the other refusals)."""
    return RunError(None, problem)


def _per_input(args: argparse.Namespace, what: str, count: int) -> list[Path | None]:
    """One file for every input: the same one for all, or one each in order."""
    given: list[Path] | None = getattr(args, what.replace('-', '_'))
    if given is None:
        return [None] * count
    if len(given) == 1:
        return [given[0]] * count
    if len(given) != count:
        raise _usage(f'--{what}: give one file, or one per diffraction file ({count}), not {len(given)}')
    return list(given)


def plan_training_jobs(args: argparse.Namespace) -> list[Any]:
    """The batch's jobs: ``<output-dir>/<stem>.npz`` per diffraction file (or ``-o`` for one)."""
    from ..host.training import TrainingJob, TrainingSources

    inputs: list[Path] = args.diffraction
    if args.output_dir is None:
        if len(inputs) > 1:
            raise _usage('several diffraction files need --output-dir (not -o)')
        if args.output is None:
            raise _usage('-o/--output (or --output-dir) is required')
        outputs = [args.output]
    else:
        if args.output is not None:
            raise _usage('use either -o/--output or --output-dir')
        stems = [p.stem for p in inputs]
        if len(set(stems)) != len(stems):
            raise _usage('several diffraction files share a file name; their outputs would collide')
        outputs = [args.output_dir / f'{stem}.npz' for stem in stems]
    files = {what: _per_input(args, what, len(inputs)) for what in _SOURCES}
    jobs = []
    for k, (diffraction, output) in enumerate(zip(inputs, outputs, strict=True)):
        sources = TrainingSources(
            diffraction, args.diffraction_reader, files['product'][k], args.product_reader,
            files['positions'][k], args.positions_reader, files['probe'][k], args.probe_reader,
            files['object'][k], args.object_reader, files['bad-pixels'][k], args.bad_pixels_reader,
        )
        jobs.append(TrainingJob(sources, output, crop_px=args.crop, counts=args.counts,
                                keep_probe_modes=args.keep_probe_modes))
    return jobs


def run(args: argparse.Namespace) -> int:
    from ..host.training import export_training_data

    values = {d[len(_Q):]: v for d, v in vars(args).items() if d.startswith(_Q) and v is not None}
    meta = ExportMeta.from_mapping(values, source='command line')
    if args.jobs < 1:
        raise _usage('--jobs must be at least 1')
    jobs = plan_training_jobs(args)
    if args.output_dir is not None:
        return _run_batch(jobs, args, meta)
    job = jobs[0]
    bar = ProgressBar(job.sources.diffraction.name)
    show = not args.quiet and sys.stderr.isatty()
    try:
        report = export_training_data(
            job.sources, job.output, crop_px=args.crop, meta=meta, counts=args.counts,
            keep_probe_modes=args.keep_probe_modes, overwrite=args.overwrite,
            progress=bar.start if show else None,
        )
    finally:
        bar.close()
    print(_summary(report))
    for note in report.notes:
        print(f'note: {note}')
    return 0


def _summary(report: Any) -> str:
    rows, cols = report.pattern_px
    return f'wrote {report.path}: {report.patterns} patterns of {rows}x{cols} ({report.domain}) under diff3d'


def _run_batch(jobs: list[Any], args: argparse.Namespace, meta: ExportMeta) -> int:
    """Every job on a Dask cluster, a local process pool (``--jobs``) or in turn, as the converter does."""
    from ..host.training import export_many

    args.output_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        executor = batch_executor(
            stack, dask_scheduler=args.dask_scheduler, jobs=args.jobs, num_jobs=len(jobs)
        )
        results = list(export_many(jobs, executor, meta=meta, overwrite=args.overwrite))
    failed = 0
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, str):
            failed += 1
            named = result.startswith(f'{job.sources.diffraction}: ')
            print(f'FAILED  {result if named else f"{job.sources.diffraction}: {result}"}')
        else:
            print(f'ok      {_summary(result)}')
    print(f'{len(jobs) - failed} of {len(jobs)} exported')
    if failed:
        raise RunError(None, f'{failed} of {len(jobs)} files failed')
    return 0
