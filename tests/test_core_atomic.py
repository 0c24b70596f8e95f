"""All-or-nothing outputs: no clobbering without overwrite, no half-written or temporary files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers import assert_no_temp_files, minimal_arrays
from ptychodus.api.io import load_product

import ptychopinn_ptychodus.convert.export as export
import ptychopinn_ptychodus.convert.importer as product_import
from ptychopinn_ptychodus import ExportMeta, export_product, import_product
from ptychopinn_ptychodus.facts.errors import InvalidInputError, OutputError


class BoomError(RuntimeError):
    pass


def test_existing_product_is_not_replaced_without_overwrite(sample_npz, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'
    out.write_bytes(b'precious')

    with pytest.raises(OutputError) as caught:
        export_product(npz, out)

    assert str(out) in str(caught.value)
    assert 'exists' in str(caught.value)
    assert out.read_bytes() == b'precious'
    assert_no_temp_files(tmp_path)


def test_existing_diffraction_file_is_not_replaced_and_nothing_else_written(sample_npz, tmp_path):
    npz, _ = sample_npz()
    product, diffraction = tmp_path / 'p.h5', tmp_path / 'd.h5'
    diffraction.write_bytes(b'precious')

    with pytest.raises(OutputError):
        export_product(npz, product, diffraction_output=diffraction)

    assert diffraction.read_bytes() == b'precious'
    assert not product.exists()
    assert_no_temp_files(tmp_path)


def test_overwrite_replaces(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'
    out.write_bytes(b'old contents')

    export_product(npz, out, ExportMeta(name='fresh'), overwrite=True)

    product = load_product(out)
    assert product.metadata.name == 'fresh'
    assert len(product.probe_positions) == arrays['xcoords'].size
    assert_no_temp_files(tmp_path)


def test_overwrite_of_an_existing_product(sample_npz, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'
    export_product(npz, out, ExportMeta(name='first'))
    export_product(npz, out, ExportMeta(name='second'), overwrite=True)
    assert load_product(out).metadata.name == 'second'


def test_import_refuses_existing_npz(sample_npz, tmp_path):
    npz, _ = sample_npz()
    export_product(npz, tmp_path / 'p.h5')
    back = tmp_path / 'back.npz'
    back.write_bytes(b'precious')

    with pytest.raises(OutputError):
        import_product(tmp_path / 'p.h5', back)
    assert back.read_bytes() == b'precious'

    import_product(tmp_path / 'p.h5', back, overwrite=True)
    with np.load(back) as restored:
        assert 'xcoords' in restored.files


def test_bad_input_leaves_nothing(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    del arrays['xcoords']
    npz = npz_from_arrays('bad.npz', **arrays)
    before = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(InvalidInputError):
        export_product(npz, tmp_path / 'out.h5', diffraction_output=tmp_path / 'd.h5')

    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_failure_mid_write_leaves_no_product(sample_npz, tmp_path, monkeypatch):
    npz, _ = sample_npz()
    real_write_product = export.write_product

    def write_then_fail(h5, product):
        real_write_product(h5, product)  # the file is half done when we fail
        h5.flush()
        raise BoomError('disk on fire')

    monkeypatch.setattr(export, 'write_product', write_then_fail)
    out = tmp_path / 'out.h5'

    with pytest.raises(BoomError):
        export_product(npz, out)

    assert not out.exists()
    assert_no_temp_files(tmp_path)


def test_failure_mid_write_keeps_the_old_file_when_overwriting(sample_npz, tmp_path, monkeypatch):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'
    export_product(npz, out, ExportMeta(name='good'))
    original = out.read_bytes()

    def fail(h5, product):
        raise BoomError('interrupted')

    monkeypatch.setattr(export, 'write_product', fail)
    with pytest.raises(BoomError):
        export_product(npz, out, ExportMeta(name='bad'), overwrite=True)

    assert out.read_bytes() == original
    assert load_product(out).metadata.name == 'good'
    assert_no_temp_files(tmp_path)


def test_failure_in_the_pattern_stack_leaves_nothing(sample_npz, tmp_path, monkeypatch):
    npz, _ = sample_npz()
    real = export.write_pattern_stack
    calls = []

    def fail_late(parent, name, shape, dtype, blocks, **kwargs):
        calls.append(name)
        real(parent, name, shape, dtype, blocks, **kwargs)
        raise BoomError('failed after the stack')

    monkeypatch.setattr(export, 'write_pattern_stack', fail_late)
    with pytest.raises(BoomError):
        export_product(npz, tmp_path / 'out.h5')

    assert calls
    assert not (tmp_path / 'out.h5').exists()
    assert_no_temp_files(tmp_path)


def test_diffraction_failure_takes_the_product_with_it(sample_npz, tmp_path, monkeypatch):
    """Product and diffraction file are published together or not at all."""
    npz, _ = sample_npz()

    def fail(*args, **kwargs):
        raise BoomError('diffraction writer failed')

    monkeypatch.setattr(export, 'write_diffraction_layout', fail)
    with pytest.raises(BoomError):
        export_product(npz, tmp_path / 'p.h5', diffraction_output=tmp_path / 'd.h5')

    assert not (tmp_path / 'p.h5').exists()
    assert not (tmp_path / 'd.h5').exists()
    assert_no_temp_files(tmp_path)


def test_import_failure_leaves_no_npz(sample_npz, tmp_path, monkeypatch):
    npz, _ = sample_npz()
    export_product(npz, tmp_path / 'p.h5')

    def fail(*args, **kwargs):
        raise BoomError('npz writer failed')

    monkeypatch.setattr(product_import, "write_npz", fail)
    with pytest.raises(BoomError):
        import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    assert not (tmp_path / 'back.npz').exists()
    assert_no_temp_files(tmp_path)


def test_missing_output_folder(sample_npz, tmp_path):
    npz, _ = sample_npz()
    with pytest.raises(OutputError) as caught:
        export_product(npz, tmp_path / 'no' / 'such' / 'out.h5')
    assert 'out.h5' in str(caught.value)


def test_output_is_a_directory(sample_npz, tmp_path):
    npz, _ = sample_npz()
    (tmp_path / 'out.h5').mkdir()
    with pytest.raises(OutputError):
        export_product(npz, tmp_path / 'out.h5', overwrite=True)
    assert (tmp_path / 'out.h5').is_dir()


def test_dry_run_writes_nothing(sample_npz, tmp_path):
    npz, _ = sample_npz(layout='HWN')
    before = sorted(p.name for p in tmp_path.iterdir())

    report = export_product(npz, tmp_path / 'out.h5', diffraction_output=tmp_path / 'd.h5', dry_run=True)

    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert 'HWN' in report.diffraction


def test_published_product_is_complete(sample_npz, tmp_path):
    npz, _ = sample_npz()
    export_product(npz, tmp_path / 'out.h5')
    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        for name in ('probe', 'object', 'probe_position_indexes', 'probe_position_x_m', 'probe_position_y_m',
                     'raw_data/diffraction'):
            assert name in h5, name


def _watch_fsync(monkeypatch) -> list[str]:
    """Record the file behind every ``os.fsync`` (the real fsync still runs)."""
    import os

    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f'/proc/self/fd/{fd}'))
        real(fd)

    monkeypatch.setattr(os, 'fsync', fsync)
    return synced


@pytest.mark.parametrize('asked', [False, True])
def test_fsync_only_when_asked_and_before_the_rename(sample_npz, tmp_path, monkeypatch, asked):
    """``--fsync``: every output is fsynced while it still has its temporary name; by default none is."""
    from ptychopinn_ptychodus.cli.convert import main

    src, _ = sample_npz()
    product, diffraction, back = tmp_path / 'p.h5', tmp_path / 'd.h5', tmp_path / 'back.npz'
    synced = _watch_fsync(monkeypatch)
    flag = ['--fsync'] if asked else []
    assert main(['--input-npz', str(src), '--output-product', str(product),
                 '--output-diffraction', str(diffraction), '--quiet', *flag]) == 0
    assert main(['--input-product', str(product), '--output-npz', str(back), '--quiet', *flag]) == 0
    if not asked:
        assert synced == []
    else:
        names = [name.rsplit('/', 1)[-1] for name in synced]
        assert len(names) == 3 and all(n.endswith('.ptychopinn-tmp') for n in names), names
        assert [n.split('.')[1] for n in names] == ['p', 'd', 'back']  # .<dest name>.<random>.ptychopinn-tmp
    for path in (product, diffraction, back):
        assert path.exists()
    assert_no_temp_files(tmp_path)
