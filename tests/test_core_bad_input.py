"""Bad input: one InvalidInputError (a ValueError) naming the file and the problem; nothing written.

Pickled members are never unpickled: the "evil" arrays below would create a marker file
if anything ran their pickle.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import numpy.lib.format as npy_format
import pytest
from helpers import CreatesFile, assert_no_temp_files, minimal_arrays, object_array

from ptychopinn_ptychodus import export_product, import_product
from ptychopinn_ptychodus.facts.errors import AmbiguousLayoutError, InvalidInputError


def expect_invalid(npz: Path, *patterns: str, tmp_path: Path, **options) -> InvalidInputError:
    """Export must refuse ``npz`` with a message naming it and matching every regex in ``patterns``."""
    out = tmp_path / 'out.h5'
    with pytest.raises(InvalidInputError) as caught:
        export_product(npz, out, **options)
    error = caught.value
    message = str(error)
    assert isinstance(error, ValueError)
    assert str(npz) in message, f'message does not name the file: {message}'
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE), f'{pattern!r} not in: {message}'
    assert '\n' not in message
    assert not out.exists()
    assert_no_temp_files(tmp_path)
    return error


# -- missing or malformed keys ----------------------------------------------------------------


@pytest.mark.parametrize('missing', ['xcoords', 'ycoords'])
def test_missing_coordinates(npz_from_arrays, tmp_path, missing):
    arrays = minimal_arrays()
    del arrays[missing]
    expect_invalid(npz_from_arrays('x.npz', **arrays), missing, tmp_path=tmp_path)


def test_missing_both_coordinates(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    del arrays['xcoords'], arrays['ycoords']
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'xcoords', 'missing', tmp_path=tmp_path)


def test_missing_probe(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    del arrays['probeGuess']
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'probeGuess', 'missing', tmp_path=tmp_path)


def test_two_dimensional_diffraction(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    arrays['diffraction'] = arrays['diffraction'][0]
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'diffraction', r'3-dimensional|dimension|shape',
                   tmp_path=tmp_path)


def test_xcoords_and_ycoords_lengths_differ(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    arrays['ycoords'] = arrays['ycoords'][:-1]
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'ycoords', r'\b8\b', r'\b9\b', tmp_path=tmp_path)


# Convention since issue 18: more positions than patterns drops the trailing positions (warned,
# recorded), as PtychoPINN's torch loader does (test_ptychopinn_flavours.py); patterns without a
# position are still refused.


def test_positions_and_patterns_counts_differ(npz_from_arrays, tmp_path):
    arrays = minimal_arrays(num=7)
    arrays['diffraction'] = minimal_arrays(num=9)['diffraction']
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'diffraction', r'\b9\b', tmp_path=tmp_path)


def test_positions_and_patterns_counts_differ_with_explicit_layout(npz_from_arrays, tmp_path):
    arrays = minimal_arrays(num=7)
    arrays['diffraction'] = minimal_arrays(num=9)['diffraction']
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'diffraction', r'\b7\b', r'\b9\b', tmp_path=tmp_path,
                   layout='NHW')


def test_nominal_positions_with_other_length(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    arrays['xcoords_start'] = arrays['xcoords'][:5]
    arrays['ycoords_start'] = arrays['ycoords'][:5]
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'xcoords_start', tmp_path=tmp_path)


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('key', ['xcoords', 'ycoords'])
def test_non_finite_positions(npz_from_arrays, tmp_path, key, value):
    arrays = minimal_arrays()
    arrays[key][4] = value
    expect_invalid(npz_from_arrays('x.npz', **arrays), key, r'finite|nan|inf', tmp_path=tmp_path)


def test_non_finite_nominal_positions_when_used(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    arrays['xcoords_start'] = arrays['xcoords'].copy()
    arrays['ycoords_start'] = arrays['ycoords'].copy()
    arrays['ycoords_start'][0] = np.nan
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'ycoords_start', r'finite|nan', tmp_path=tmp_path,
                   positions='nominal')


def test_empty_scan(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    arrays['xcoords'] = np.zeros(0)
    arrays['ycoords'] = np.zeros(0)
    arrays['diffraction'] = arrays['diffraction'][:0]
    expect_invalid(npz_from_arrays('x.npz', **arrays), r'empty|no positions|0 positions', tmp_path=tmp_path)


@pytest.mark.parametrize('key', ['xcoords', 'diffraction', 'probeGuess', 'objectGuess', 'scan_index'])
def test_string_arrays(npz_from_arrays, tmp_path, key):
    arrays = minimal_arrays()
    if key == 'scan_index':
        arrays[key] = np.array(['a'] * 9)
    else:
        arrays[key] = np.full(arrays[key].shape, 'text')
    expect_invalid(npz_from_arrays('x.npz', **arrays), key, r'dtype|numeric|real', tmp_path=tmp_path)


def test_nominal_positions_requested_but_missing(npz_from_arrays, tmp_path):
    expect_invalid(npz_from_arrays('x.npz', **minimal_arrays()), 'xcoords_start', tmp_path=tmp_path,
                   positions='nominal')


def test_bad_pixels_shape_mismatch(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    expect_invalid(npz_from_arrays('x.npz', bad_pixels=np.zeros((8, 8), bool), **arrays), 'bad_pixels',
                   tmp_path=tmp_path)


# -- pickles are never run ---------------------------------------------------------------------


def _evil(marker: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An object array whose first element, once unpickled, creates ``marker``."""
    return object_array(CreatesFile(marker), shape)


def test_the_evil_payload_works_when_unpickled(npz_from_arrays, tmp_path):
    """Control: numpy.load with pickle enabled does run it, so the tests below can fail."""
    marker = tmp_path / 'control-marker'
    npz = npz_from_arrays('control.npz', **{**minimal_arrays(), 'xcoords': _evil(marker, (9,))})
    with np.load(npz, allow_pickle=True) as loaded:
        loaded['xcoords']
    assert marker.exists()


@pytest.mark.parametrize('key', ['xcoords', 'diffraction', 'probeGuess', 'objectGuess', 'scan_index'])
def test_object_arrays_are_refused_not_unpickled(npz_from_arrays, tmp_path, key):
    marker = tmp_path / 'pwned'
    arrays = minimal_arrays()
    shape = (9,) if key in ('xcoords', 'scan_index') else arrays[key].shape
    arrays[key] = _evil(marker, shape)
    npz = npz_from_arrays('evil.npz', **arrays)

    expect_invalid(npz, key, r'object|pickle|dtype', tmp_path=tmp_path)

    assert not marker.exists(), 'the pickle was executed'


def test_evil_metadata_is_skipped_with_a_warning(npz_from_arrays, tmp_path, caplog):
    marker = tmp_path / 'pwned'
    npz = npz_from_arrays('evil_meta.npz', _metadata=np.array(CreatesFile(marker), dtype=object),
                          **minimal_arrays())
    out = tmp_path / 'out.h5'

    with caplog.at_level(logging.WARNING):
        export_product(npz, out)

    assert not marker.exists(), 'the _metadata pickle was executed'
    assert out.exists()
    assert any('_metadata' in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    with h5py.File(out, 'r') as h5:
        assert '_metadata' not in h5['raw_data']


def test_evil_metadata_inside_an_object_array_is_skipped(npz_from_arrays, tmp_path, caplog):
    """The restricted unpickler allows numpy's array reconstruction, but not what is inside it."""
    marker = tmp_path / 'pwned'
    npz = npz_from_arrays('evil_meta.npz', _metadata=_evil(marker, ()), **minimal_arrays())

    with caplog.at_level(logging.WARNING):
        export_product(npz, tmp_path / 'out.h5')

    assert not marker.exists()
    assert any('_metadata' in r.getMessage() for r in caplog.records)


def test_evil_metadata_not_run_by_inspection(npz_from_arrays, tmp_path):
    marker = tmp_path / 'pwned'
    npz = npz_from_arrays('evil_meta.npz', _metadata=_evil(marker, ()), **minimal_arrays())
    export_product(npz, None, dry_run=True)
    assert not marker.exists()


# -- damaged files ------------------------------------------------------------------------------


def _member_data_offset(path: Path, member: str) -> tuple[int, int]:
    """(offset of the member's raw data in the zip file, its compressed size)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    with open(path, 'rb') as raw:
        raw.seek(info.header_offset)
        header = raw.read(30)
    name_len, extra_len = struct.unpack('<HH', header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def test_truncated_file(sample_npz, tmp_path):
    npz, _ = sample_npz()
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    expect_invalid(npz, r'truncated|zip|corrupt', tmp_path=tmp_path)


def test_truncated_member_data_with_intact_directory(sample_npz, tmp_path):
    """Cut the diffraction stack short but keep a consistent zip directory: the header lies."""
    npz, arrays = sample_npz()
    stack = arrays['diffraction']
    short = npz.with_name('short.npz')
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, npy_format.header_data_from_array_1_0(stack))
    with zipfile.ZipFile(short, 'w') as out, zipfile.ZipFile(npz) as src:
        for name in src.namelist():
            if name == 'diffraction.npy':
                out.writestr(name, buffer.getvalue() + stack.tobytes()[: stack.nbytes // 2])
            else:
                out.writestr(name, src.read(name))
    expect_invalid(short, 'diffraction', r'truncated|corrupt|bytes', tmp_path=tmp_path)


def test_corrupt_deflated_data(sample_npz, tmp_path):
    npz, _ = sample_npz(compress=True)
    offset, size = _member_data_offset(npz, 'diffraction.npy')
    data = bytearray(npz.read_bytes())
    data[offset + size // 3: offset + size // 3 + 64] = bytes(range(64))
    npz.write_bytes(bytes(data))
    expect_invalid(npz, r'diffraction|corrupt|crc', tmp_path=tmp_path)


def test_corrupt_stored_data_is_detected(sample_npz, tmp_path):
    """Flipped bytes inside a stored (uncompressed) member: the zip CRC-32 no longer matches.

    ``numpy.load`` notices (zipfile checks the CRC); a converter must not silently
    carry damaged patterns into a product.
    """
    npz, _ = sample_npz(compress=False)
    offset, size = _member_data_offset(npz, 'diffraction.npy')
    data = bytearray(npz.read_bytes())
    start = offset + size // 2
    data[start: start + 16] = bytes(b ^ 0xFF for b in data[start: start + 16])
    npz.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile):  # control: numpy sees the damage
        with np.load(npz) as loaded:
            loaded['diffraction']
    expect_invalid(npz, r'diffraction|corrupt|crc', tmp_path=tmp_path)


def test_corrupt_npy_header(sample_npz, tmp_path):
    npz, _ = sample_npz(compress=False)
    offset, _ = _member_data_offset(npz, 'probeGuess.npy')
    data = bytearray(npz.read_bytes())
    data[offset: offset + 6] = b'XXXXXX'  # the \x93NUMPY magic
    npz.write_bytes(bytes(data))
    expect_invalid(npz, 'probeGuess', tmp_path=tmp_path)


def test_not_a_zip_at_all(tmp_path):
    text = tmp_path / 'notes.npz'
    text.write_text('this is just text, not an archive\n' * 20)
    expect_invalid(text, r'zip|npz', tmp_path=tmp_path)


def test_zip_without_arrays(tmp_path):
    path = tmp_path / 'empty.npz'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('readme.txt', 'no arrays here')
    expect_invalid(path, r'no .*array|not an npz', tmp_path=tmp_path)


def test_header_declaring_a_huge_shape(tmp_path):
    """A member whose header says (10**6, 10**6) float32 (4 TB) but holds a few bytes."""
    path = tmp_path / 'huge.npz'
    arrays = minimal_arrays()
    with zipfile.ZipFile(path, 'w') as archive:
        for key, value in arrays.items():
            if key == 'diffraction':
                buffer = io.BytesIO()
                npy_format.write_array_header_1_0(
                    buffer, {'descr': '<f4', 'fortran_order': False, 'shape': (10**6, 10**6)}
                )
                archive.writestr('diffraction.npy', buffer.getvalue() + b'\0' * 1024)
            else:
                buffer = io.BytesIO()
                npy_format.write_array(buffer, value)
                archive.writestr(f'{key}.npy', buffer.getvalue())
    expect_invalid(path, 'diffraction', r'1000000', tmp_path=tmp_path)


def test_header_edited_in_place_to_a_bigger_shape(sample_npz, tmp_path):
    """Same-length edit of a stored member's header: (9, 16, 16) -> (900000000, 16, 16)."""
    npz, _ = sample_npz(compress=False)
    data = npz.read_bytes()
    old = b"'shape': (9, 16, 16), }"
    new = b"'shape': (900000000, 16, 16), }"
    grow = len(new) - len(old)
    start = data.index(old)
    end = start + len(old)
    assert data[end: end + grow] == b' ' * grow  # header padding absorbs the change
    edited = data[:start] + new + data[end + grow:]
    assert len(edited) == len(data)
    npz.write_bytes(edited)
    expect_invalid(npz, 'diffraction', r'900000000', tmp_path=tmp_path)


# -- layout ----------------------------------------------------------------------------------------


def test_m_equals_n_is_read_as_nhw_with_a_warning_and_explicit_choice_wins(npz_from_arrays, tmp_path, caplog):
    # Convention since issue 18: M == N is read as NHW, as PtychoPINN's loaders read it
    # (ptycho_torch/dataloader.py, RawData); the warning names --layout. It used to be refused.
    arrays = minimal_arrays(num=16, n=16)
    npz = npz_from_arrays('square.npz', **arrays)

    out = tmp_path / 'default.h5'
    with caplog.at_level(logging.WARNING):
        report = export_product(npz, out)
    assert any('--layout' in note and 'NHW' in note for note in report.notes), report.notes
    assert '--layout' in caplog.text
    with h5py.File(out, 'r') as h5:
        np.testing.assert_array_equal(h5['raw_data/diffraction'][()], arrays['diffraction'])
        assert h5['raw_data/diffraction'].attrs['original_axis_order'] == 'NHW'

    resolved = tmp_path / 'resolved.h5'
    export_product(npz, resolved, layout='HWN')
    with h5py.File(resolved, 'r') as h5:
        np.testing.assert_array_equal(h5['raw_data/diffraction'][()], np.moveaxis(arrays['diffraction'], -1, 0))
        assert h5['raw_data/diffraction'].attrs['original_axis_order'] == 'HWN'


def test_two_non_pattern_axes_matching_stays_ambiguous(npz_from_arrays, tmp_path):
    arrays = minimal_arrays(num=16, n=16)
    arrays['diffraction'] = np.zeros((8, 16, 16), np.float32)  # (H, M, W) or (H, W, M): cannot tell
    error = expect_invalid(npz_from_arrays('x.npz', **arrays), 'ambiguous', '--layout', tmp_path=tmp_path)
    assert isinstance(error, AmbiguousLayoutError)


def test_fewer_positions_than_patterns_is_refused(npz_from_arrays, tmp_path):
    # (More positions than patterns is handled as PtychoPINN does: see test_ptychopinn_flavours.py.)
    arrays = minimal_arrays(num=5, n=16)
    arrays['diffraction'] = np.zeros((9, 16, 16), np.float32)
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'diffraction', r'\b9\b', r'\b5\b', tmp_path=tmp_path)


def test_explicit_layout_that_does_not_fit(npz_from_arrays, tmp_path):
    arrays = minimal_arrays(num=9, n=16)
    expect_invalid(npz_from_arrays('x.npz', **arrays), 'diffraction', 'NHW1', tmp_path=tmp_path,
                   layout='NHW1')


# -- the path itself -------------------------------------------------------------------------------


def test_directory_as_input(tmp_path):
    folder = tmp_path / 'folder.npz'
    folder.mkdir()
    expect_invalid(folder, 'directory', tmp_path=tmp_path)


def test_missing_file(tmp_path):
    expect_invalid(tmp_path / 'nowhere.npz', r'no such file|not found|missing', tmp_path=tmp_path)


def test_import_of_a_non_product(tmp_path, sample_npz):
    npz, _ = sample_npz()
    with pytest.raises(InvalidInputError) as caught:
        import_product(npz, tmp_path / 'back.npz')
    assert str(npz) in str(caught.value)
    assert not (tmp_path / 'back.npz').exists()


def test_import_of_a_product_missing_positions(tmp_path, sample_npz):
    npz, _ = sample_npz()
    product = tmp_path / 'p.h5'
    export_product(npz, product)
    with h5py.File(product, 'r+') as h5:
        del h5['probe_position_x_m']
    with pytest.raises(InvalidInputError, match='probe_position_x_m') as caught:
        import_product(product, tmp_path / 'back.npz')
    assert str(product) in str(caught.value)
    assert not (tmp_path / 'back.npz').exists()
