"""``convert_to_ptychodus_product``: the only place exceptions become exit codes.

Every failure ends as one line on stderr and a non-zero exit; tracebacks are
shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from .._version import __version__
from ..convert.batch import Job, batch_executor, convert_many, plan_jobs
from ..convert.export import ExportOptions, ExportReport, export_product
from ..convert.importer import import_product
from ..convert.sidecar import find_sidecar, read_sidecar_file
from ..facts.errors import PtychoPINNError
from ..facts.geometry import ObjectPlacement, PositionConvention
from ..facts.quantities import QUANTITIES, ExportMeta
from ..facts.stack import Domain, Layout
from ..host.compat import CROP_NOTE
from ..npz.dataset import ReadOptions
from ..safeio.atomic import create_folder, describe_os_error
from ..safeio.cancellation import Interrupted
from .console import (
    ProgressBar,
    package_logging,
    pin_malloc_mmap_threshold,
    quiet_unraisable,
    signals_raise,
)

PROG = 'convert_to_ptychodus_product'
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
logger = logging.getLogger('ptychopinn_ptychodus')


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f'{self.prog}: error: {message} (see --help)\n')


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=PROG,
        description='Convert a PtychoPINN NPZ into a Ptychodus product HDF5 (and back).',
    )
    _add_io_arguments(parser.add_argument_group('input and output'))
    _add_quantity_arguments(
        parser.add_argument_group('product metadata (unknown physics is defaulted, warned and recorded)')
    )
    _add_interpretation_arguments(parser.add_argument_group('interpretation'))
    _add_pairing_arguments(
        parser.add_argument_group(
            'object from a reconstruction output (positions, probe and patterns stay the dataset\'s)'
        )
    )
    run = parser.add_argument_group('run')
    run.add_argument('--jobs', type=int, default=1, help='files converted in parallel (batch)')
    run.add_argument(
        '--dask-scheduler',
        metavar='ADDRESS',
        help='batch on a Dask cluster (e.g. tcp://host:8786; needs the [dask] extra)',
    )
    run.add_argument('--quiet', action='store_true', help='errors only; no progress bar')
    run.add_argument('--debug', action='store_true', help='show tracebacks')
    run.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    return parser


def _add_io_arguments(io: argparse._ArgumentGroup) -> None:
    io.add_argument(
        '--input-npz',
        nargs='+',
        type=Path,
        metavar='NPZ',
        help='PtychoPINN dataset(s); several files need --output-dir',
    )
    io.add_argument('--output-product', type=Path, metavar='H5', help='product HDF5 to write')
    io.add_argument('--output-dir', type=Path, help='folder for <stem>.h5 products (batch mode)')
    io.add_argument(
        '--output-diffraction',
        type=Path,
        metavar='H5',
        help="also write Ptychodus's assembled-diffraction HDF5 (intensities)",
    )
    io.add_argument(
        '--write-diffraction-file',
        action='store_true',
        help='batch mode: also write <stem>.diffraction.h5 next to each product',
    )
    io.add_argument(
        '--input-product',
        type=Path,
        metavar='H5',
        help='reverse direction: product HDF5 to turn back into an NPZ',
    )
    io.add_argument('--output-npz', type=Path, metavar='NPZ', help='reverse direction: NPZ to write')
    io.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    io.add_argument(
        '--fsync',
        action='store_true',
        help='wait until each output is on disk before publishing it (survives a power cut; '
        'costs the disk write time). Outputs are atomic either way',
    )
    io.add_argument(
        '--inspect', action='store_true', help='print what was found and what would be written; write nothing'
    )


def _flag(spelling: str) -> str:
    return '--' + spelling.replace('_', '-')


#: argparse destination prefix of the quantity flags (each flag keeps its own spelling).
_Q = 'quantity:'


def _add_quantity_arguments(meta: argparse._ArgumentGroup) -> None:
    """One flag per spelling in the quantity table; the guide's spelling is the one shown."""
    meta.add_argument('--name', help='product name (default: the input file stem)')
    meta.add_argument('--comments', help='product comments')
    meta.add_argument(
        '--metadata-json',
        type=Path,
        metavar='JSON',
        help='sidecar with any of the metadata below (flags win over it)',
    )
    squares: set[str] = set()
    for quantity in QUANTITIES:
        if quantity.square is not None and quantity.square not in squares:
            squares.add(quantity.square)
            what = quantity.help.replace(' width', ' size').split(' (')[0]
            meta.add_argument(
                _flag(quantity.square),
                dest=_Q + quantity.square,
                type=float,
                metavar='X',
                help=f'{what} (m, square; width/height flags refine it)',
            )
        shown = quantity.flag or quantity.name
        for spelling in quantity.spellings:
            meta.add_argument(
                _flag(spelling),
                dest=_Q + spelling,
                type=float,
                metavar='X',
                help=quantity.help if spelling == shown else argparse.SUPPRESS,
            )


def _add_interpretation_arguments(data: argparse._ArgumentGroup) -> None:
    data.add_argument(
        '--include-diffraction',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='bundle patterns and coordinates in /raw_data (default: on)',
    )
    data.add_argument(
        '--diffraction-domain',
        choices=('auto', *(domain.value for domain in Domain)),
        default='auto',
        help='what the stack holds (default: decided and logged)',
    )
    data.add_argument(
        '--positions',
        choices=('actual', 'nominal'),
        default=None,
        help='xcoords/ycoords (actual, default) or xcoords_start/ycoords_start',
    )
    data.add_argument(
        '--layout',
        choices=('auto', *(layout.value for layout in Layout)),
        default='auto',
        help='pattern axis of the stack (default: matched to the positions)',
    )
    data.add_argument(
        '--position-convention',
        choices=tuple(convention.value for convention in PositionConvention),
        default=None,
        help="what xcoords/ycoords mean: 'ptychopinn' (PtychoPINN's patch rule: the pixel at patch "
        "index N//2; the default unless the file records one) or 'identity' (already Ptychodus "
        "object pixels, as Ptychodus's own PtychoPINN export writes them)",
    )
    data.add_argument(
        '--compression',
        choices=('none', 'gzip', 'lzf'),
        default='gzip',
        help='HDF5 filter for the pattern stacks (default gzip: readable everywhere)',
    )
    data.add_argument(
        '--compression-level', type=int, choices=range(0, 10), metavar='0-9', help='gzip level (default 4)'
    )


def _add_pairing_arguments(pair: argparse._ArgumentGroup) -> None:
    pair.add_argument(
        '--object-from',
        type=Path,
        metavar='NPZ',
        help="take the object from PtychoPINN's recon.npz (YY_pred), compare_models.py "
        'reconstructions.npz, or tike/pty-chi reconstruction NPZ, placed on the dataset\'s grid',
    )
    pair.add_argument(
        '--object-key',
        metavar='KEY',
        help="its array (e.g. YY_pred, baseline_complex, 'amp,phase'; default: a known key)"
    )
    pair.add_argument(
        '--object-placement',
        choices=tuple(p.value for p in ObjectPlacement),
        default=None,
        help='how the writer laid the object out (default: told from the key and the file)',
    )
    pair.add_argument(
        '--stitch-crop-size',
        type=int,
        metavar='M',
        help='M PtychoPINN stitched with (compare_models default 20)',
    )
    pair.add_argument(
        '--tike-extra-padding', type=int, metavar='PX', help='the tike run\'s --extra-padding (default 64)'
    )


#: Sidecar reader options -> (argparse destination, its value when the flag was not given).
_SIDECAR_FLAGS = (
    ('diffraction_domain', 'diffraction_domain', 'auto'),
    ('positions', 'positions', None),
    ('layout', 'layout', 'auto'),
    ('position_convention', 'position_convention', None),
    ('object_from', 'object_from', None),
    ('object_key', 'object_key', None),
    ('object_placement', 'object_placement', None),
    ('stitch_crop_size', 'stitch_crop_size', None),
    ('tike_extra_padding', 'tike_extra_padding', None),
)


def meta_from_args(args: argparse.Namespace) -> ExportMeta:
    """Sidecar values, overridden by flags (square sizes first, refined by width/height).

    The sidecar's reader options (``diffraction_domain``, ``positions``, ``layout``,
    ``position_convention``) fill the matching flags that were not given.
    """
    meta = ExportMeta()
    sidecar = _sidecar_of(args)
    if sidecar is not None:
        meta, options = read_sidecar_file(sidecar)
        ReadOptions.parse(  # the core's check of the values, naming the sidecar
            sidecar,
            domain=options.get('diffraction_domain'),
            positions=options.get('positions'),
            layout=options.get('layout'),
            position_convention=options.get('position_convention'),
        )
        for key, dest, unset in _SIDECAR_FLAGS:
            if key in options and getattr(args, dest) == unset:
                setattr(args, dest, options[key])
    values = {
        dest[len(_Q) :]: value
        for dest, value in vars(args).items()
        if dest.startswith(_Q) and value is not None
    }
    texts = {key: getattr(args, key) for key in ('name', 'comments') if getattr(args, key) is not None}
    return meta.overlay(ExportMeta.from_mapping({**texts, **values}, source='command line'))


def _sidecar_of(args: argparse.Namespace) -> Path | None:
    """``--metadata-json``, else the sidecar next to a single input, found as the plugin finds it.

    The same file must give the same product from the command line and from the
    Ptychodus file dialog, which can only find metadata next to the dataset.
    """
    if args.metadata_json:
        return Path(args.metadata_json)
    inputs = args.input_npz or []
    if len(inputs) != 1:
        return None
    found = find_sidecar(inputs[0])  # the plugin's own choice of sidecar (name rules in convert/sidecar.py)
    if found is None:
        return None
    if not args.quiet:
        print(f'{PROG}: reading metadata from {found} (next to the input, as the plugin does)',
              file=sys.stderr)
    return found


def _export_options(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    """The command line's interpretation and output options, as :class:`ExportOptions` fields."""
    return {
        'include_raw': args.include_diffraction,
        'overwrite': args.overwrite,
        'fsync': args.fsync,
        'domain': None if args.diffraction_domain == 'auto' else args.diffraction_domain,
        'positions': args.positions or 'actual',
        'layout': None if args.layout == 'auto' else args.layout,
        'position_convention': args.position_convention,
        'compression': args.compression,
        'compression_level': args.compression_level,
        'progress': progress,
        'dry_run': args.inspect,
        'object_from': args.object_from,
        'object_key': args.object_key,
        'object_placement': args.object_placement,
        'stitch_crop_size': args.stitch_crop_size,
        'tike_extra_padding': args.tike_extra_padding,
    }


def run_job(job: Job, args: argparse.Namespace, meta: ExportMeta) -> ExportReport:
    """One conversion in this process, with a progress bar on a terminal."""
    show = not (args.quiet or args.inspect or args.jobs > 1) and sys.stderr.isatty()
    bar = ProgressBar(job.input_npz.name)
    try:
        options = ExportOptions(
            diffraction_output=job.output_diffraction, **_export_options(args, bar.start if show else None)
        )
        return export_product(job.input_npz, job.output_product, meta, options)
    finally:
        bar.close()


def _plan_jobs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Job]:
    inputs: list[Path] = args.input_npz
    if len(inputs) == 1 and args.output_dir is None:
        if args.output_product is None and args.output_diffraction is None and not args.inspect:
            parser.error('--output-product (or --output-diffraction) is required')
        return [Job(inputs[0], args.output_product, args.output_diffraction)]
    if args.output_product is not None or args.output_diffraction is not None:
        parser.error('several inputs: use --output-dir instead of --output-product/--output-diffraction')
    if args.output_dir is None and not args.inspect:
        parser.error('several inputs need --output-dir')
    try:
        return plan_jobs(inputs, args.output_dir or Path('.'), write_diffraction=args.write_diffraction_file)
    except ValueError as exc:
        parser.error(str(exc))


def _create_output_folders(jobs: list[Job], args: argparse.Namespace) -> None:
    """Missing output folders are created (as the Python API does), and the user is told."""
    for job in jobs:
        for dest in (job.output_product, job.output_diffraction):
            if dest is not None:
                created = create_folder(dest)
                if created is not None and not args.quiet:
                    print(f'{PROG}: created folder {created}', file=sys.stderr)


def _refuse_npz_product(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A product is HDF5: writing it under an ``.npz`` name would mislead every later reader."""
    for flag, dest in (('--output-product', args.output_product), ('--output-diffraction',
                                                                   args.output_diffraction)):
        if dest is not None and Path(dest).suffix.lower() == '.npz':
            parser.error(
                f'{flag} {dest}: this output is HDF5, so name it .h5 '
                '(to write an NPZ from a product use --input-product PRODUCT.h5 --output-npz OUT.npz)'
            )


def _print_inspection(report: ExportReport, job: Job) -> None:
    print(f'input: {report.input_path}')
    print(f'  positions: {report.num_positions}')
    print(f'  probe: {report.probe_shape}')
    print(f'  object: {report.object_shape}')
    print(f'  diffraction: {report.diffraction}')
    print(f'  position convention: {report.position_convention}')
    print(f'  Ptychodus crop: {CROP_NOTE}')
    if report.fraction_on_object is not None:
        print(f'  positions over the object: {100 * report.fraction_on_object:.1f}%')
    for note in report.notes:
        print(f'  note: {note}')
    print(f'would write product: {job.output_product or "-"}')
    print(f'would write diffraction: {job.output_diffraction or "-"}')


def join_negative_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--flag -7e-7`` -> ``--flag=-7e-7``: argparse would take ``-7e-7`` for an option."""
    takes_value = {
        option
        for action in parser._actions
        if action.nargs is None and action.option_strings
        for option in action.option_strings
    }
    out: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token in takes_value and following is not None and following.startswith('-'):
            try:
                float(following)
            except ValueError:
                pass
            else:
                out.append(f'{token}={following}')
                index += 2
                continue
        out.append(token)
        index += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    pin_malloc_mmap_threshold()
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv, parser))
    with package_logging(args), quiet_unraisable(args.debug):
        return _main(args, parser)


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        with signals_raise():
            return _dispatch(args, parser)
    except (Interrupted, KeyboardInterrupt) as exc:
        name = signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else 'SIGINT'
        print(f'{PROG}: interrupted by {name}; {_interrupted_outcome(args)}', file=sys.stderr)
        return EXIT_INTERRUPTED
    except PtychoPINNError as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        where = exc.filename or ''
        print(f'{PROG}: error: {where}{": " if where else ""}{describe_os_error(exc)}', file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback unasked
        if args.debug:
            raise
        print(f'{PROG}: internal error: {type(exc).__name__}: {exc} (rerun with --debug)', file=sys.stderr)
        return EXIT_FAILED


def _interrupted_outcome(args: argparse.Namespace) -> str:
    """What an interrupt leaves behind, truthfully for each mode."""
    batch = args.input_npz and (len(args.input_npz) > 1 or args.output_dir is not None) and not args.inspect
    if not batch:
        return 'nothing was written'
    if args.dask_scheduler:
        return (
            'files finished before it are complete; conversions already running on the Dask workers '
            'may still publish complete products; no partial file is left at any destination'
        )
    return 'files finished before it are complete; running conversions were stopped and left nothing'


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.input_product is not None:
        if args.input_npz:
            parser.error('use either --input-npz or --input-product')
        if args.output_npz is None:
            parser.error('--input-product needs --output-npz')
        created = create_folder(args.output_npz)
        if created is not None and not args.quiet:
            print(f'{PROG}: created folder {created}', file=sys.stderr)
        result = import_product(
            args.input_product,
            args.output_npz,
            overwrite=args.overwrite,
            fsync=args.fsync,
            check_terminates=True,
            position_convention=args.position_convention,
        )
        if not args.quiet:
            print(result.summary())
        return 0
    if not args.input_npz:
        parser.error('--input-npz (or --input-product) is required')
    if args.jobs < 1:
        parser.error('--jobs must be at least 1')
    _refuse_npz_product(args, parser)
    if args.object_from is not None and len(args.input_npz) > 1:
        parser.error('--object-from pairs one reconstruction with one dataset: give a single --input-npz')
    meta = meta_from_args(args)
    jobs = _plan_jobs(args, parser)
    if args.inspect:
        logger.setLevel(logging.ERROR)  # the notes are part of the printed inspection: not twice
        for job in jobs:
            _print_inspection(run_job(job, args, meta), job)
        return 0
    _create_output_folders(jobs, args)
    if len(jobs) == 1:
        report = run_job(jobs[0], args, meta)
        if not args.quiet:
            print(report.summary())
        return 0
    return _run_batch(jobs, args, meta)


def _run_batch(jobs: list[Job], args: argparse.Namespace, meta: ExportMeta) -> int:
    options = _export_options(args, progress=None)
    inputs = [job.input_npz for job in jobs]
    out = args.output_dir or Path('.')
    with ExitStack() as stack:
        executor = batch_executor(
            stack, dask_scheduler=args.dask_scheduler, jobs=args.jobs, num_jobs=len(jobs)
        )
        results = convert_many(
            inputs,
            out,
            executor=executor,
            meta=meta,
            write_diffraction=args.write_diffraction_file,
            **options,
        )
    failed = 0
    for result in results:
        if result.ok:
            print(f'ok      {result.summary}')
        else:
            failed += 1
            error = result.error or ''
            named = error.startswith(f'{result.input_npz}: ')  # our errors already name the file
            print(f'FAILED  {error if named else f"{result.input_npz}: {error}"}')
    print(f'{len(jobs) - failed} of {len(jobs)} converted')
    if failed:
        print(f'{PROG}: error: {failed} of {len(jobs)} files failed', file=sys.stderr)
    return EXIT_FAILED if failed else 0


def run() -> None:
    """Console-script entry point."""
    if hasattr(signal, 'SIGXFSZ'):  # a file-size limit must be an error, not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sys.exit(main())
