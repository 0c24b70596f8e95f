"""Hostile files.

(a) Pickled object arrays, in any key (``_metadata`` included), are never
    unpickled: not by the converter, not by the CLI, not by the Ptychodus plugin
    readers. Every payload would create a marker file if anything ran it.
    (``test_core_bad_input.py`` covers export_product for five keys; this extends
    it to every key, more pickle shapes and protocols, the CLI and the plugin.)
(b) ``.npy`` headers declaring huge shapes are refused before anything of that
    size is allocated (measured with tracemalloc, which numpy reports to), with
    an error naming the array; shapes whose byte count overflows 64 bits too.
(c) Zip directories that lie: an uncompressed size beyond deflate's ~1032:1
    limit is refused; a member that inflates to more than its declared size is
    never read past that size; archives with more than 4096 members are refused.
"""

from __future__ import annotations

import logging
import pickle
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import (
    FULL_META,
    TINY,
    CreatesFile,
    assert_no_temp_files,
    minimal_arrays,
    npy_bytes,
    npy_header_bytes,
    object_array,
    stderr_lines,
    write_arrays,
    write_zip,
)

from ptychopinn_ptychodus import cli, export_product, open_dataset
from ptychopinn_ptychodus.facts.errors import PtychoPINNError
from ptychopinn_ptychodus.plugin import NPZDiffractionFileReader, NPZProductFileReader

# -- (a) pickles ---------------------------------------------------------------------------------


class _MarkingArray(np.ndarray):
    """An ndarray subclass: unpickling goes through numpy's *allowed* ``_reconstruct``
    but then calls this class's ``__setstate__``, which would create the marker."""

    marker: str = ''

    def __reduce__(self):
        constructor, args, state = super().__reduce__()
        return constructor, args, (state, _MarkingArray.marker)

    def __setstate__(self, state):
        inner, marker = state
        open(marker, 'w').close()
        super().__setstate__(inner)


def _pickled_npy(obj: Any, shape: tuple[int, ...], protocol: int) -> bytes:
    """An object-dtype .npy member whose body is ``pickle.dumps(obj, protocol)``."""
    header = npy_header_bytes(shape, descr='|O')
    return header + pickle.dumps(obj, protocol=protocol)


def _evil_members(marker: Path, key: str, shape: tuple[int, ...]) -> dict[str, bytes]:
    """Variants of a pickled payload for one key."""
    _MarkingArray.marker = str(marker)
    marking = np.zeros(1).view(_MarkingArray)
    return {
        'reduce-in-object-array': npy_bytes(object_array(CreatesFile(marker), shape), allow_pickle=True),
        'bare-reduce-protocol-0': _pickled_npy(CreatesFile(marker), shape, 0),
        'bare-reduce-protocol-5': _pickled_npy(CreatesFile(marker), shape, 5),
        'ndarray-subclass-setstate': _pickled_npy(object_array(marking, shape), shape, 2),
    }


EVIL_KEYS: dict[str, Callable[[dict[str, np.ndarray]], tuple[int, ...]]] = {
    'diffraction': lambda a: a['diffraction'].shape,
    'diff3d': lambda a: a['diffraction'].shape,
    'probeGuess': lambda a: a['probeGuess'].shape,
    'objectGuess': lambda a: a['objectGuess'].shape,
    'xcoords': lambda a: a['xcoords'].shape,
    'ycoords': lambda a: a['ycoords'].shape,
    'xcoords_start': lambda a: a['xcoords'].shape,
    'scan_index': lambda a: a['xcoords'].shape,
    'bad_pixels': lambda a: a['diffraction'].shape[1:],
    '_metadata': lambda a: (),
    'photon_energy_eV': lambda a: (),
    'diffraction_domain': lambda a: (),
    'product_name': lambda a: (),
    'unrelated_extra_key': lambda a: (3,),
}
VARIANTS = ['reduce-in-object-array', 'bare-reduce-protocol-0', 'bare-reduce-protocol-5',
            'ndarray-subclass-setstate']


def _evil_npz(folder: Path, key: str, variant: str, marker: Path) -> Path:
    arrays = minimal_arrays(**TINY)
    members = {k: npy_bytes(v) for k, v in arrays.items()}
    if key == 'xcoords_start':
        members['ycoords_start'] = npy_bytes(arrays['ycoords'])
    if key == 'diff3d':  # otherwise the honest 'diffraction' wins and diff3d is never looked at
        members.pop('diffraction')
    members[key] = _evil_members(marker, key, EVIL_KEYS[key](arrays))[variant]
    return write_zip(folder / f'evil_{key}_{variant}.npz', members)


def test_control_the_payloads_do_run_when_unpickled(tmp_path):
    """Without this, a broken payload would make every test below pass vacuously."""
    for variant in VARIANTS:
        marker = tmp_path / f'control-{variant}'
        npz = _evil_npz(tmp_path, 'xcoords', variant, marker)
        with np.load(npz, allow_pickle=True) as loaded:
            loaded['xcoords']
        assert marker.exists(), variant


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except PtychoPINNError as exc:
        assert str(exc), 'empty error message'
        return 'refused'
    return 'ok'


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('key', list(EVIL_KEYS))
def test_pickles_are_never_run_in_process(tmp_path, key, variant, capsys):
    """Core, plugin readers (including get_patterns) and the CLI's main(), in this process."""
    marker = tmp_path / 'pwned'
    npz = _evil_npz(tmp_path, key, variant, marker)

    def read_diffraction() -> None:
        dataset = NPZDiffractionFileReader().read(npz)
        for array in dataset:
            array.get_patterns()

    outcomes = {
        'open_dataset': _outcome(lambda: list(open_dataset(npz).iter_pattern_blocks(4))),
        'export_product': _outcome(lambda: export_product(npz, tmp_path / 'out.h5', overwrite=True)),
        'diffraction reader': _outcome(read_diffraction),
        'product reader': _outcome(lambda: NPZProductFileReader().read(npz)),
    }
    code = cli.main(['--input-npz', str(npz), '--output-product', str(tmp_path / 'cli.h5'), '--quiet',
                     *FULL_META])
    captured = capsys.readouterr()

    assert not marker.exists(), f'a pickle in {key!r} was executed ({variant}); outcomes {outcomes}'
    assert code in (0, 1), captured
    assert 'Traceback' not in captured.err and 'internal error' not in captured.err, captured.err
    if code == 1:
        assert len(stderr_lines(captured.err)) == 1, captured.err
        assert not (tmp_path / 'cli.h5').exists()
    if key in ('diffraction', 'diff3d', 'probeGuess', 'objectGuess', 'xcoords', 'ycoords'):
        assert outcomes['export_product'] == 'refused', outcomes
    assert_no_temp_files(tmp_path)


def test_pickles_are_never_run_by_the_cli_subprocess(run_cli, tmp_path):
    """Every evil file in one batch run of the real CLI (a fresh interpreter)."""
    inputs = []
    markers = []
    for key in EVIL_KEYS:
        for variant in VARIANTS[:3]:  # the subclass variant needs this test module importable
            marker = tmp_path / f'pwned-{key}-{variant}'
            markers.append(marker)
            inputs.append(_evil_npz(tmp_path, key, variant, marker))
    out_dir = tmp_path / 'products'
    out_dir.mkdir()

    result = run_cli('--input-npz', *inputs, '--output-dir', out_dir, '--quiet', *FULL_META)

    assert [m.name for m in markers if m.exists()] == [], 'pickles were executed by the CLI'
    assert result.returncode in (0, 1), result
    assert 'Traceback' not in result.stderr + result.stdout, result
    assert 'internal error' not in result.stdout, result.stdout
    assert_no_temp_files(tmp_path)


def test_evil_metadata_through_the_plugin_readers_is_skipped(tmp_path):
    """A dataset whose only poison is ``_metadata`` still opens, with a warning."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    source = logging.getLogger('ptychopinn_ptychodus.npz.archive')
    previous_level = source.level
    source.addHandler(handler)
    source.setLevel(logging.WARNING)  # cli.main() in other tests may have set --quiet levels
    try:
        _read_evil_metadata_files(tmp_path)
    finally:
        source.removeHandler(handler)
        source.setLevel(previous_level)
    assert sum('_metadata' in r.getMessage() for r in records) >= len(VARIANTS)


def _read_evil_metadata_files(tmp_path: Path) -> None:
    for variant in VARIANTS:
        marker = tmp_path / f'pwned-{variant}'
        npz = _evil_npz(tmp_path, '_metadata', variant, marker)
        product = NPZProductFileReader().read(npz)
        dataset = NPZDiffractionFileReader().read(npz)
        patterns = dataset[0].get_patterns()
        assert patterns.shape == minimal_arrays(**TINY)['diffraction'].shape
        assert len(product.probe_positions) == len(minimal_arrays(**TINY)['xcoords'])
        assert not marker.exists(), variant


# -- (b) huge declared shapes ---------------------------------------------------------------------

#: Far below anything a huge shape would need, far above what a tiny archive needs.
ALLOCATION_CEILING = 64 << 20


def _with_header(key: str, shape: tuple[int, ...], descr: str, *, compress: bool = False,
                 data: bytes = b'\0' * 64) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        arrays = minimal_arrays(**TINY)
        members = {k: npy_bytes(v) for k, v in arrays.items()}
        members[key] = npy_header_bytes(shape, descr) + data
        return write_zip(path, members, compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)

    return make


def _peak_allocation(call: Callable[[], Any]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    error: BaseException | None = None
    try:
        call()
    except Exception as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


HUGE: dict[str, tuple[str, tuple[int, ...], str, bytes]] = {
    'diffraction-1e15': ('diffraction', (10**7, 10**4, 10**4), '<f4', b'\0' * 64),
    'diffraction-hwn-1e15': ('diffraction', (10**4, 10**4, 10**7), '<f4', b'\0' * 64),
    'xcoords-1e12': ('xcoords', (10**12,), '<f8', b'\0' * 64),
    'objectGuess-1e12': ('objectGuess', (10**6, 10**6), '<c8', b'\0' * 64),
    'probeGuess-1e10': ('probeGuess', (10**5, 10**5), '<c16', b'\0' * 64),
    'bad_pixels-1e10': ('bad_pixels', (10**5, 10**5), '|b1', b'\0' * 64),
    # Byte counts of 2**64 or more: a 64-bit product wraps to exactly 0, which an
    # empty member "matches", or cannot be computed at all in a C long.
    'xcoords-2^64-bytes-wraps-to-0': ('xcoords', (2**32, 2**32), '<f8', b''),
    'objectGuess-2^64-bytes-wraps-to-0': ('objectGuess', (2**32, 2**32), '<c8', b''),
    'diffraction-2^128-bytes-wraps-to-0': ('diffraction', (6, 2**62, 2**62), '<f4', b''),
    'xcoords-2^64-elements': ('xcoords', (2**64,), '<f8', b''),
}


@pytest.mark.parametrize('compress', [False, True], ids=['stored', 'deflated'])
@pytest.mark.parametrize('case', list(HUGE))
def test_huge_declared_shape_is_refused_before_allocation(tmp_path, case, compress):
    key, shape, descr, data = HUGE[case]
    npz = _with_header(key, shape, descr, compress=compress, data=data)(tmp_path / f'{case}.npz')

    for name, call in {
        'export_product': lambda: export_product(npz, tmp_path / 'out.h5'),
        'open_dataset+blocks': lambda: list(open_dataset(npz).iter_pattern_blocks(4)),
        'diffraction reader': lambda: NPZDiffractionFileReader().read(npz)[0].get_patterns(),
        'product reader': lambda: NPZProductFileReader().read(npz),
    }.items():
        peak, error = _peak_allocation(call)
        assert peak < ALLOCATION_CEILING, f'{name}: {peak / 2**20:.0f} MiB allocated for {case}'
        assert isinstance(error, PtychoPINNError), (
            f'{name}: expected a PtychoPINNError naming {key!r}, got {type(error).__name__}: {error}'
        )
        assert key in str(error) and str(npz) in str(error), f'{name}: {error}'
    assert not (tmp_path / 'out.h5').exists()
    assert_no_temp_files(tmp_path)


# -- (c) lying zip directories --------------------------------------------------------------------

_LOCAL = struct.Struct('<4sHHHHHIIIHH')  # signature ... crc, csize, usize, name len, extra len
_CENTRAL_SIG = b'PK\x01\x02'


def _patch_sizes(path: Path, member: str, *, file_size: int | None = None, crc: int | None = None) -> None:
    """Rewrite a member's uncompressed size and/or CRC in its local header and central entry."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    assert info.file_size < 0xFFFFFFFF and info.compress_size < 0xFFFFFFFF, 'zip64 not handled here'
    local = info.header_offset
    assert data[local:local + 4] == b'PK\x03\x04'
    if crc is not None:
        struct.pack_into('<I', data, local + 14, crc)
    if file_size is not None:
        struct.pack_into('<I', data, local + 22, file_size)
    position = data.find(_CENTRAL_SIG)
    patched = False
    while position >= 0:
        name_len, = struct.unpack_from('<H', data, position + 28)
        name = bytes(data[position + 46: position + 46 + name_len]).decode()
        if name == member:
            if crc is not None:
                struct.pack_into('<I', data, position + 16, crc)
            if file_size is not None:
                struct.pack_into('<I', data, position + 24, file_size)
            patched = True
        position = data.find(_CENTRAL_SIG, position + 4)
    assert patched
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('key', ['xcoords', 'diffraction', 'probeGuess'])
def test_uncompressed_size_beyond_deflate_limit_is_refused(tmp_path, key):
    npz = write_arrays(tmp_path / 'bomb.npz', minimal_arrays(**TINY), compress=True)
    with zipfile.ZipFile(npz) as archive:
        compressed = archive.getinfo(f'{key}.npy').compress_size
    _patch_sizes(npz, f'{key}.npy', file_size=min(compressed * 2000, 0xFFFFFFFE))

    peak, error = _peak_allocation(lambda: export_product(npz, tmp_path / 'out.h5'))

    assert isinstance(error, PtychoPINNError), f'{type(error).__name__}: {error}'
    assert key in str(error) and str(npz) in str(error), error
    assert peak < ALLOCATION_CEILING
    assert not (tmp_path / 'out.h5').exists()
    with zipfile.ZipFile(npz) as archive:  # control: the edit is what zipfile now believes
        assert archive.getinfo(f'{key}.npy').file_size > 1100 * compressed


def _overlong_member(path: Path, key: str, extra: int, *, fix_crc: bool) -> tuple[Path, np.ndarray]:
    """``key``'s deflate stream inflates to its .npy bytes plus ``extra`` more bytes,
    while the directory declares only the .npy size (and, with ``fix_crc``, its CRC)."""
    arrays = minimal_arrays(**TINY)
    honest = npy_bytes(arrays[key])
    members = {k: npy_bytes(v) for k, v in arrays.items() if k != key}
    write_zip(path, members, compression=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path, 'a', compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f'{key}.npy', honest + b'\x7f' * extra)
    _patch_sizes(path, f'{key}.npy', file_size=len(honest),
                 crc=zlib.crc32(honest) if fix_crc else None)
    return path, arrays[key]


@pytest.mark.parametrize('key', ['xcoords', 'diffraction'])
def test_member_inflating_past_its_declared_size_with_matching_crc(tmp_path, key):
    """The surplus 32 MiB are never produced: the array read is exactly the declared one."""
    npz, expected = _overlong_member(tmp_path / 'long.npz', key, 32 << 20, fix_crc=True)
    out = tmp_path / 'out.h5'

    peak, error = _peak_allocation(lambda: export_product(npz, out))

    assert peak < 16 << 20, f'{peak / 2**20:.0f} MiB allocated: the surplus was inflated'
    if error is not None:
        assert isinstance(error, PtychoPINNError), f'{type(error).__name__}: {error}'
        assert not out.exists()
        return
    with h5py.File(out, 'r') as h5:
        np.testing.assert_array_equal(h5[f'raw_data/{key}'][()], expected)


@pytest.mark.parametrize('key', ['xcoords', 'diffraction'])
def test_member_inflating_past_its_declared_size_with_wrong_crc(tmp_path, key):
    npz, _ = _overlong_member(tmp_path / 'long.npz', key, 1 << 20, fix_crc=False)
    out = tmp_path / 'out.h5'

    peak, error = _peak_allocation(lambda: export_product(npz, out))

    assert isinstance(error, PtychoPINNError), f'{type(error).__name__}: {error}'
    assert key in str(error), error
    assert peak < 16 << 20
    assert not out.exists()
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('filler', ['npy', 'txt'])
def test_more_than_4096_members_is_refused(tmp_path, filler):
    npz = tmp_path / 'fanout.npz'
    members = {k: npy_bytes(v) for k, v in minimal_arrays(**TINY).items()}
    tiny = npy_bytes(np.zeros(1, np.uint8))
    with zipfile.ZipFile(npz, 'w') as archive:
        for key, data in members.items():
            archive.writestr(f'{key}.npy', data)
        for i in range(4097 - len(members) + 1):
            archive.writestr(f'extra{i}.{filler}', tiny if filler == 'npy' else b'x')

    for call in (lambda: export_product(npz, tmp_path / 'out.h5'),
                 lambda: NPZProductFileReader().read(npz),
                 lambda: NPZDiffractionFileReader().read(npz)):
        with pytest.raises(PtychoPINNError, match='4096') as caught:
            call()
        assert str(npz) in str(caught.value)
    assert not (tmp_path / 'out.h5').exists()


def test_exactly_4096_members_is_accepted(tmp_path):
    """Control for the limit above: it is a limit, not a refusal of big archives."""
    npz = tmp_path / 'many.npz'
    members = {k: npy_bytes(v) for k, v in minimal_arrays(**TINY).items()}
    with zipfile.ZipFile(npz, 'w') as archive:
        for key, data in members.items():
            archive.writestr(f'{key}.npy', data)
        for i in range(4096 - len(members)):
            archive.writestr(f'extra{i}.txt', b'x')
    export_product(npz, tmp_path / 'out.h5')
    assert (tmp_path / 'out.h5').exists()
