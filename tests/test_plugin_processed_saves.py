"""Saving what Ptychodus processed: our diffraction writer after crop, binning or no load at all.

Ptychodus hands a writer its *processed* patterns (cropped, binned) while
``metadata.detector_extent`` stays the raw detector's, in 1.5.1, 1.6 and 1.7. The
file we write must describe the arrays themselves: it reloads with plain
``numpy.load``, ``diffraction ** 2`` equals what Ptychodus held (float32 rounding),
``bad_pixels`` has the processed shape, and nothing is published before the data
are assembled. Settings are set through ``diffraction_settings`` by the names each
release uses (``crop_center_*`` in 1.5.1, ``beam_center_*`` from 1.6), as the Open
Dataset wizard does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_no_temp_files
from ptychodus.model import ModelCore

from ptychopinn_ptychodus import plugin
from ptychopinn_ptychodus.cli.sample import write_sample
from ptychopinn_ptychodus.facts.errors import OutputError
from ptychopinn_ptychodus.npz.archive import StreamedArray, write_npz
from ptychopinn_ptychodus.safeio.atomic import atomic_output

NPZ = plugin.NPZ_SIMPLE_NAME


def set_crop_center(settings: Any, x_px: int, y_px: int) -> None:
    """The crop centre under the running release's name (1.5.1 ``crop_center_*``, 1.6+ ``beam_center_*``)."""
    prefix = 'beam_center' if hasattr(settings, 'beam_center_x_px') else 'crop_center'
    getattr(settings, f'{prefix}_x_px').set_value(x_px)
    getattr(settings, f'{prefix}_y_px').set_value(y_px)


def raw_intensities(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(arrays['diffraction'], np.float64) ** 2


def load(core: ModelCore, path: Path) -> Any:
    core.workflow_api.load_diffraction_data(path, file_type=NPZ, block=True)
    core.run_tasks()
    return core.diffraction_core.diffraction_api


def save_and_check(api: Any, folder: Path, expected: np.ndarray) -> dict[str, np.ndarray]:
    """save_patterns -> numpy.load; amplitude ** 2 equals Ptychodus's assembled patterns and ``expected``."""
    held = np.asarray(api.get_assembled_data(0).get_patterns())
    out = folder / 'saved.npz'
    api.save_patterns(out, NPZ, dataset_index=0)
    with np.load(out, allow_pickle=False) as z:
        saved = {key: z[key] for key in z.files}
    assert saved['diffraction'].shape == held.shape
    np.testing.assert_allclose(saved['diffraction'].astype(np.float64) ** 2, held, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(held, expected, rtol=2e-6, atol=1e-5)
    assert saved['bad_pixels'].shape == held.shape[1:]
    np.testing.assert_array_equal(saved['pattern_indexes'], np.arange(held.shape[0]))
    assert str(saved['diffraction_domain']) == 'amplitude'
    return saved


def test_crop_off_saves_the_whole_patterns(tmp_path: Path) -> None:
    path = tmp_path / 'p32.npz'
    arrays = write_sample(path, pattern_px=32, scan_side=2)
    with ModelCore() as core:
        core.diffraction_core.diffraction_settings.crop_enabled.set_value(False)
        save_and_check(load(core, path), tmp_path, raw_intensities(arrays))


def test_default_crop_takes_the_64_px_corner_and_the_save_says_so(tmp_path: Path) -> None:
    """Ptychodus's default headless crop: 64 x 64 around (32, 32) -> rows/cols 0..63 of a 128 px pattern."""
    path = tmp_path / 'p128.npz'
    arrays = write_sample(path, pattern_px=128, scan_side=2)
    with ModelCore() as core:
        saved = save_and_check(load(core, path), tmp_path, raw_intensities(arrays)[:, 0:64, 0:64])
    assert saved['diffraction'].shape[1:] == (64, 64)


def test_centred_16_px_crop_of_32_px_patterns(tmp_path: Path) -> None:
    """The issue's case: a 16 x 16 crop of 32 x 32 patterns used to write a (M, 32, 32) header."""
    path = tmp_path / 'p32.npz'
    arrays = write_sample(path, pattern_px=32, scan_side=2)
    with ModelCore() as core:
        settings = core.diffraction_core.diffraction_settings
        set_crop_center(settings, 16, 16)
        settings.crop_width_px.set_value(16)
        settings.crop_height_px.set_value(16)
        saved = save_and_check(load(core, path), tmp_path, raw_intensities(arrays)[:, 8:24, 8:24])
    assert saved['diffraction'].shape[1:] == (16, 16)


def test_binning_saves_binned_patterns_and_pixel(tmp_path: Path) -> None:
    path = tmp_path / 'p32.npz'
    arrays = write_sample(path, pattern_px=32, scan_side=2)
    raw = raw_intensities(arrays)
    binned = raw.reshape(raw.shape[0], 16, 2, 16, 2).sum(axis=(2, 4))
    with ModelCore() as core:
        settings = core.diffraction_core.diffraction_settings
        settings.crop_enabled.set_value(False)
        settings.binning_enabled.set_value(True)
        settings.bin_size_x.set_value(2)
        settings.bin_size_y.set_value(2)
        api = load(core, path)
        raw_pixel = api.get_repository()[0].get_metadata().detector_pixel_geometry if hasattr(
            api, 'get_repository') else None
        saved = save_and_check(api, tmp_path, binned)
    assert saved['diffraction'].shape[1:] == (16, 16)
    if raw_pixel is not None:
        assert float(saved['detector_pixel_width_m']) == pytest.approx(2 * raw_pixel.width_m, rel=1e-12)


def test_saving_before_the_patterns_are_assembled_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / 'p32.npz'
    write_sample(path, pattern_px=32, scan_side=2)
    out = tmp_path / 'early.npz'
    with ModelCore() as core:
        core.workflow_api.load_diffraction_data(path, file_type=NPZ, block=False)  # no run_tasks()
        api = core.diffraction_core.diffraction_api
        with pytest.raises(OutputError, match='no diffraction patterns are assembled yet'):
            api.save_patterns(out, NPZ, dataset_index=0)
    assert not out.exists()
    assert_no_temp_files(tmp_path)


def test_reader_reports_the_zero_frequency_pixel_as_beam_centre(tmp_path: Path) -> None:
    """N // 2 (x = column, y = row): 1.6+ ``beam_center``, 1.5.1 ``crop_center``."""
    path = tmp_path / 'p128.npz'
    write_sample(path, pattern_px=128, scan_side=2)
    meta = plugin.NPZDiffractionFileReader().read(path).get_metadata()
    centre = getattr(meta, 'beam_center', None) or getattr(meta, 'crop_center', None)
    assert centre is not None
    xy = (getattr(centre, 'x_px', None), getattr(centre, 'y_px', None))
    if xy == (None, None):
        xy = (centre.position_x_px, centre.position_y_px)
    assert xy == (64, 64)


def test_crop_at_the_reported_beam_centre_keeps_the_centre(tmp_path: Path) -> None:
    """What the wizard does with our beam centre: a 64 px crop of 128 px patterns keeps rows/cols 32..95,
    and the zero-frequency pixel (64, 64) lands on (32, 32) = 64 // 2 of the crop, as PtychoPINN expects."""
    path = tmp_path / 'p128.npz'
    arrays = write_sample(path, pattern_px=128, scan_side=2)
    meta = plugin.NPZDiffractionFileReader().read(path).get_metadata()
    centre = getattr(meta, 'beam_center', None) or getattr(meta, 'crop_center', None)
    x_px = getattr(centre, 'x_px', getattr(centre, 'position_x_px', None))
    y_px = getattr(centre, 'y_px', getattr(centre, 'position_y_px', None))
    with ModelCore() as core:
        set_crop_center(core.diffraction_core.diffraction_settings, x_px, y_px)
        api = load(core, path)
        held = np.asarray(api.get_assembled_data(0).get_patterns())
    raw = raw_intensities(arrays)
    np.testing.assert_allclose(held, raw[:, 32:96, 32:96], rtol=2e-6, atol=1e-5)
    np.testing.assert_allclose(held[:, 32, 32], raw[:, 64, 64], rtol=2e-6)


# --- the core guarantee underneath: no streamed member can publish a header that lies ---------


@pytest.mark.parametrize(
    ('blocks', 'problem'),
    [
        ([np.ones((4, 2, 2), np.float32)], 'does not fit the declared shape'),  # the crop case
        ([np.ones((3, 4, 4), np.float32)], 'ended after 3 of 4 rows'),
        ([np.ones((5, 4, 4), np.float32)], 'run past the declared 4 rows'),
        ([np.ones((4, 4, 4), np.complex64)], 'does not fit the declared float32'),
    ],
)
def test_write_npz_refuses_blocks_that_do_not_fill_the_header(
    tmp_path: Path, blocks: list[np.ndarray], problem: str
) -> None:
    dest = tmp_path / 'out.npz'
    streamed = StreamedArray(shape=(4, 4, 4), dtype=np.dtype(np.float32), blocks=iter(enumerate(blocks)))
    with pytest.raises(OutputError, match=problem), atomic_output(dest, overwrite=False) as tmp:
        write_npz(tmp, {'diffraction': streamed})
    assert not dest.exists()
    assert_no_temp_files(tmp_path)


def test_write_npz_removes_its_partial_file_without_atomic_output(tmp_path: Path) -> None:
    dest = tmp_path / 'direct.npz'
    streamed = StreamedArray(shape=(2, 3, 3), dtype=np.dtype(np.float32),
                             blocks=iter([(0, np.ones((2, 2, 2), np.float32))]))
    with pytest.raises(OutputError):
        write_npz(dest, {'diffraction': streamed})
    assert not dest.exists()
