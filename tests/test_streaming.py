"""Streamed conversion (small blocks) gives exactly what an in-memory conversion gives."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import to_nhw
from ptychodus.api.io import load_diffraction_data

from ptychopinn_ptychodus import export_product, import_product


def in_memory_reference(npz: Path, key: str, layout: str) -> np.ndarray:
    """The naive path: numpy.load everything, transpose in memory."""
    with np.load(npz) as data:
        stack = data[key]
    return np.ascontiguousarray(to_nhw(stack, layout))


@pytest.mark.parametrize('layout', ['NHW', 'HWN', 'NHW1'])
@pytest.mark.parametrize('compress', [False, True], ids=['stored', 'deflated'])
@pytest.mark.parametrize('compression', ['none', 'gzip', 'lzf'])
@pytest.mark.parametrize('counts', [False, True], ids=['amplitude', 'counts'])
def test_streamed_equals_in_memory(
    sample_npz, tmp_path: Path, layout: str, compress: bool, compression: str, counts: bool
) -> None:
    npz, _ = sample_npz('in.npz', key='diff3d', layout=layout, counts=counts, compress=compress,
                        pattern_px=24, scan_side=7)
    source = in_memory_reference(npz, 'diff3d', layout)
    pattern_bytes = source[0].nbytes
    product, diffraction = tmp_path / 'p.h5', tmp_path / 'd.h5'
    # 5 patterns per block: many blocks, none aligned with the 49 patterns or the HDF5 chunks
    export_product(npz, product, diffraction_output=diffraction, compression=compression,  # type: ignore[arg-type]
                   block_bytes=5 * pattern_bytes)

    expected_intensity = source if counts else source.astype(np.float32) ** 2
    patterns = load_diffraction_data(diffraction).get_patterns()
    assert patterns.dtype == expected_intensity.dtype
    assert np.array_equal(patterns, expected_intensity)

    with h5py.File(product, 'r') as h5:
        bundled = h5['raw_data/diffraction'][()]
    # the bundle keeps the stack as given (amplitudes as amplitudes, counts as counts), in NHW
    assert bundled.dtype == source.dtype
    np.testing.assert_array_equal(bundled, source)

    back = tmp_path / 'back.npz'
    import_product(product, back)
    with np.load(back) as data:
        restored = data['diff3d']
    assert restored.dtype == source.dtype
    assert np.array_equal(restored, source)


def test_one_block_and_many_blocks_write_identical_datasets(sample_npz, tmp_path: Path) -> None:
    npz, _ = sample_npz('in.npz', layout='HWN', pattern_px=32, scan_side=6)
    outputs = []
    for name, block in (('whole', 1 << 30), ('tiny', 1)):
        out = tmp_path / f'{name}.h5'
        export_product(npz, out, compression='gzip', block_bytes=block)
        with h5py.File(out, 'r') as h5:
            dset = h5['raw_data/diffraction']
            outputs.append((dset[()], dset.chunks, dset.compression, dset.shuffle))
    (a, *meta_a), (b, *meta_b) = outputs
    assert meta_a == meta_b
    assert np.array_equal(a, b)


@pytest.mark.parametrize('kernel', ['copies', 'refuses'])
def test_stored_nhw_stack_is_copied_in_the_kernel_or_written_when_it_refuses(
    sample_npz, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    """Uncompressed NHW from a stored member: ``copy_file_range`` block by block, bit-exact.

    Where the kernel refuses (``EXDEV`` across filesystems, as some kernels do) the
    writer falls back to ``pwrite`` for the rest of the stack, with the same bytes.
    """
    import errno
    import os

    npz, _ = sample_npz('in.npz', key='diff3d', pattern_px=24, scan_side=7)
    source = in_memory_reference(npz, 'diff3d', 'NHW')
    calls: list[int] = []
    real = os.copy_file_range

    def copy_file_range(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        calls.append(count)
        if kernel == 'refuses':
            raise OSError(errno.EXDEV, 'Invalid cross-device link')
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, 'copy_file_range', copy_file_range)
    product = tmp_path / 'p.h5'
    export_product(npz, product, compression='none', block_bytes=5 * source[0].nbytes)
    with h5py.File(product, 'r') as h5:
        bundled = h5['raw_data/diffraction']
        assert bundled.compression is None and bundled.chunks is None
        np.testing.assert_array_equal(bundled[()], source)
    # 49 patterns in blocks of 5: ten copies, or one refused attempt and pwrite after it
    assert len(calls) == (10 if kernel == 'copies' else 1), calls


def test_corrupt_stored_stack_copied_in_the_kernel_is_still_refused(sample_npz, tmp_path: Path) -> None:
    """The CRC-32 is checked from the mapping while the kernel copies: a flipped byte publishes nothing."""
    from ptychopinn_ptychodus.facts.errors import InvalidInputError
    from ptychopinn_ptychodus.npz.archive import NpzArchive

    npz, _ = sample_npz('in.npz', key='diff3d', pattern_px=24, scan_side=7)
    with NpzArchive(npz) as archive:
        offset = archive.data_offset('diff3d')
    assert offset is not None
    data = bytearray(npz.read_bytes())
    data[offset + 1000] ^= 0x40
    npz.write_bytes(bytes(data))
    product = tmp_path / 'p.h5'
    with pytest.raises(InvalidInputError, match='fails its CRC-32 check'):
        export_product(npz, product, compression='none')
    assert not product.exists() and list(tmp_path.glob('.p.h5.*')) == []
