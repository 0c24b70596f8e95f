"""Reconstruction outputs (no positions) paired with their dataset: placed as their writers laid them out.

Outputs are written by tests/reconstruction_outputs.py exactly as PtychoPINN's scripts write
them; the stitched canvas is made by cutting patches and stitching them the way PtychoPINN
does (numpy re-implementation cited there). Every product is read back with Ptychodus's
own ``load_product`` and geometry: the object Ptychodus sees under each probe position must
be the object the dataset has there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import FULL_META, assert_one_line_failure, h5_attrs, product_pixels, write_arrays
from ptychodus.api.io import load_product
from reconstruction_outputs import (
    bilinear,
    compare_models_reconstructions,
    cut_patches,
    grid_lines_recon,
    linear_object,
    ptychi_reconstruction,
    stitch,
    tike_canvas,
    tike_reconstruction,
)

from ptychopinn_ptychodus import ExportMeta, InvalidInputError, export_product

PIXEL = 5e-8
META = ExportMeta(object_pixel_width_m=PIXEL, object_pixel_height_m=PIXEL)
N = 16


def _dataset(tmp_path: Path, obj: np.ndarray, x: np.ndarray, y: np.ndarray, n: int = N) -> Path:
    rng = np.random.default_rng(1)
    arrays = {
        'diffraction': (rng.random((x.size, n, n)) + 0.1).astype(np.float32),
        'probeGuess': (rng.random((n, n)) + 1j * rng.random((n, n))).astype(np.complex64),
        'objectGuess': obj.astype(np.complex64),
        'xcoords': x,
        'ycoords': y,
    }
    return write_arrays(tmp_path / 'scan.npz', arrays)


def _scan(fractional: bool) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(5) * 6.0 + 30, np.arange(5) * 7.0 + 26)  # odd counts: a whole-pixel centre of mass
    x, y = cols.ravel(), rows.ravel()
    if fractional:  # one fraction for all: patches are cut with sub-pixel shifts, stitched with whole ones
        x, y = x + 0.3, y - 0.35
    return x, y


def _seen(product_path: Path) -> np.ndarray:
    """The object value Ptychodus's geometry puts under each probe position (bilinear)."""
    product = load_product(product_path)
    x_px, y_px = product_pixels(product)
    obj = product.object_.get_array().reshape(product.object_.get_array().shape[-2:])
    return bilinear(obj, x_px, y_px)


def _pair(tmp_path: Path, dataset: Path, output: Path, **options: object) -> Path:
    paired = tmp_path / 'paired.h5'
    export_product(dataset, paired, META, object_from=output, **options)
    return paired


def _alone(tmp_path: Path, dataset: Path) -> Path:
    alone = tmp_path / 'alone.h5'
    export_product(dataset, alone, META)
    return alone


# -- the stitched canvas (grid_lines recon.npz, compare_models reconstructions.npz) ------------------


def test_stitched_canvas_sits_exactly_on_the_dataset_object(tmp_path):
    rng = np.random.default_rng(0)
    obj = np.exp(1j * rng.random((90, 100))) * (0.5 + rng.random((90, 100)))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    canvas = stitch(cut_patches(obj, x, y, N), x, y, m=8)
    output = grid_lines_recon(tmp_path / 'recon.npz', canvas)

    paired = _pair(tmp_path, dataset, output, stitch_crop_size=8)

    product = load_product(paired)
    placed = product.object_.get_array().reshape(canvas.shape)
    np.testing.assert_array_equal(placed, canvas)  # the canvas itself, not resampled
    # integer positions: the canvas is the object, shifted by a whole number of pixels
    origin = h5_attrs(paired)['ptychopinn_object_origin_px']
    ox, oy = int(round(origin[0])), int(round(origin[1]))
    assert (ox, oy) == pytest.approx(tuple(origin), abs=1e-4)
    covered = np.abs(canvas) > 0
    window = obj[oy : oy + canvas.shape[0], ox : ox + canvas.shape[1]]
    np.testing.assert_allclose(canvas[covered], window[covered], rtol=1e-5)
    np.testing.assert_allclose(_seen(paired), _seen(_alone(tmp_path, dataset)), rtol=1e-5)


def test_stitched_canvas_with_fractional_positions_lands_within_a_hundredth_of_a_pixel(tmp_path):
    obj = linear_object((90, 100))  # bilinear interpolation is exact on it: any misplacement shows
    x, y = _scan(fractional=True)
    dataset = _dataset(tmp_path, obj, x, y)
    canvas = stitch(cut_patches(obj, x, y, N), x, y, m=N)
    output = grid_lines_recon(tmp_path / 'recon.npz', canvas)

    paired = _pair(tmp_path, dataset, output, stitch_crop_size=N)

    seen, expected = _seen(paired), _seen(_alone(tmp_path, dataset))
    # slopes of 0.01-0.02 per pixel: 1e-6 means under 1e-4 px of placement error
    np.testing.assert_allclose(seen, expected, atol=1e-6)
    wrong = seen - 0.01 * 0.5  # what half a pixel off in x would give
    assert np.max(np.abs(wrong - expected)) > 1e-3


def test_compare_models_output_takes_the_ptychopinn_object_and_can_take_the_baseline(tmp_path):
    rng = np.random.default_rng(5)
    obj = np.exp(1j * rng.random((90, 100)))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    canvas = stitch(cut_patches(obj, x, y, N), x, y, m=N)
    output = compare_models_reconstructions(tmp_path / 'reconstructions.npz', canvas[None, ..., None])
    paired = _pair(tmp_path, dataset, output, stitch_crop_size=N)
    assert h5_attrs(paired)['ptychopinn_object_source_key'] == 'ptychopinn_complex'
    assert 'reconstructions.npz' in load_product(paired).metadata.comments

    # baseline None is a pickled object array: refused by name, never unpickled
    with pytest.raises(InvalidInputError, match='baseline_complex holds Python objects'):
        _pair(tmp_path, dataset, output, stitch_crop_size=N, object_key='baseline_complex', overwrite=True)
    both = compare_models_reconstructions(tmp_path / 'both.npz', canvas, baseline=canvas * 2)
    paired = _pair(tmp_path, dataset, both, stitch_crop_size=N, object_key='baseline_complex', overwrite=True)
    np.testing.assert_allclose(load_product(paired).object_.get_array().reshape(canvas.shape), canvas * 2)


def test_wrong_crop_size_is_refused_naming_the_sizes(tmp_path):
    obj = linear_object((90, 100))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    output = grid_lines_recon(tmp_path / 'recon.npz', stitch(cut_patches(obj, x, y, N), x, y, m=8))
    with pytest.raises(InvalidInputError, match=r'recon.npz: YY_pred is \d+x\d+ but a stitched object'):
        _pair(tmp_path, dataset, output, stitch_crop_size=12)
    assert not (tmp_path / 'paired.h5').exists()


# -- tike and pty-chi --------------------------------------------------------------------------------


def test_tike_output_is_placed_by_tikes_padding_rule(tmp_path):
    obj = linear_object((90, 100))
    x, y = _scan(fractional=True)
    dataset = _dataset(tmp_path, obj, x, y)
    output = tike_reconstruction(tmp_path / 'tike_reconstruction.npz', tike_canvas(obj, x, y, N, extra=3),
                                 np.ones((N, N), np.complex64), extra_padding=3)

    paired = _pair(tmp_path, dataset, output, tike_extra_padding=3)

    assert 'tike' in h5_attrs(paired)['ptychopinn_object_placement']
    np.testing.assert_allclose(_seen(paired), _seen(_alone(tmp_path, dataset)), atol=1e-5)
    with pytest.raises(InvalidInputError, match='tike-extra-padding'):  # the default 64 is not this run's
        _pair(tmp_path, dataset, output, overwrite=True)


def test_ptychi_output_puts_each_probe_where_ptychi_centred_it(tmp_path):
    obj = linear_object((90, 100))
    x, y = _scan(fractional=True)
    dataset = _dataset(tmp_path, obj, x, y)
    shape = (int(np.ceil(np.ptp(y))) + N + 50, int(np.ceil(np.ptp(x))) + N + 50)  # get_suggested_object_size
    output = ptychi_reconstruction(tmp_path / 'ptychi_reconstruction.npz', np.ones(shape, np.complex64),
                                   np.ones((N, N), np.complex64))

    paired = _pair(tmp_path, dataset, output)

    # pty-chi centres probe index (N-1)/2 on object pixel (x - mean x) + round(W/2) + 0.5 (its
    # data_structures/object.py origin), as Ptychodus centres the probe on its position
    x_px, y_px = product_pixels(paired)
    np.testing.assert_allclose(x_px, x - x.mean() + np.rint(shape[1] / 2) + 0.5, atol=1e-6)
    np.testing.assert_allclose(y_px, y - y.mean() + np.rint(shape[0] / 2) + 0.5, atol=1e-6)


# -- choosing the key, and refusals -------------------------------------------------------------------


def test_amp_phase_pair_and_explicit_placement(tmp_path):
    obj = linear_object((90, 100))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    np.savez(tmp_path / 'ap.npz', amp=np.abs(obj), phase=np.angle(obj))
    paired = _pair(tmp_path, dataset, tmp_path / 'ap.npz', object_placement='dataset')
    np.testing.assert_allclose(_seen(paired), _seen(_alone(tmp_path, dataset)), rtol=1e-5)
    assert h5_attrs(paired)['ptychopinn_object_source_key'] == 'amp,phase'


@pytest.mark.parametrize(
    ('arrays', 'options', 'problem'),
    [
        ({'probe': np.ones((4, 4))}, {}, 'holds no object (keys: probe)'),
        ({'a': np.ones((40, 40), np.complex64), 'b': np.ones((40, 40), np.complex64)}, {},
         'more than one object in it (a, b)'),
        ({'YY_pred': np.ones((40, 40), np.complex64)}, {'object_key': 'obj'}, "has no key 'obj'"),
        ({'YY_pred': np.ones((2, 40, 40), np.complex64)}, {}, 'expected one 2-D object'),
        ({'obj': np.ones((200, 200), np.complex64)}, {}, 'choose --object-placement'),
        ({'obj': np.ones((20, 20), np.complex64)}, {'object_placement': 'dataset'}, 'smaller than the scan needs'),
        ({'obj': np.ones((99, 99))}, {'object_key': 'obj', 'object_placement': 'dataset'}, 'is real'),
    ],
)
def test_refusals_name_the_output_and_the_problem(tmp_path, arrays, options, problem):
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, linear_object((90, 100)), x, y)
    output = write_arrays(tmp_path / 'out.npz', arrays)
    with pytest.raises(InvalidInputError) as caught:
        _pair(tmp_path, dataset, output, **options)
    assert problem in str(caught.value) and 'out.npz' in str(caught.value)
    assert not (tmp_path / 'paired.h5').exists()


# -- command line, sidecar (the plugin's path), docs example -----------------------------------------


def test_cli_pairs_and_refuses_in_one_line(tmp_path, run_cli):
    obj = linear_object((90, 100))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    grid_lines_recon(tmp_path / 'recon.npz', stitch(cut_patches(obj, x, y, N), x, y, m=8))
    out = tmp_path / 'paired.h5'
    done = run_cli('--input-npz', dataset, '--object-from', 'recon.npz', '--object-key', 'YY_pred',
                   '--stitch-crop-size', '8', '--output-product', out, *FULL_META)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_seen(out), _seen(_alone(tmp_path, dataset)), rtol=1e-5)
    bad = run_cli('--input-npz', dataset, '--object-from', 'recon.npz', '--stitch-crop-size', '12',
                  '--output-product', 'x.h5', *FULL_META)
    assert_one_line_failure(bad, names=['recon.npz', 'YY_pred'], absent=[tmp_path / 'x.h5'])


def test_sidecar_object_from_reaches_ptychodus_product_reader(tmp_path):
    from ptychopinn_ptychodus.host.plugin import NPZProductFileReader

    obj = linear_object((90, 100))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    (tmp_path / 'recons').mkdir()
    canvas = stitch(cut_patches(obj, x, y, N), x, y, m=8)
    grid_lines_recon(tmp_path / 'recons' / 'recon.npz', canvas)
    sidecar = {'object_pixel_size_m': PIXEL, 'object_from': 'recons/recon.npz', 'stitch_crop_size': 8}
    (tmp_path / 'scan.ptychodus.json').write_text(json.dumps(sidecar))

    product = NPZProductFileReader().read(dataset)

    np.testing.assert_array_equal(product.object_.get_array().reshape(canvas.shape), canvas)
    x_px, y_px = product_pixels(product)
    np.testing.assert_allclose(bilinear(canvas, x_px, y_px), _seen(_alone(tmp_path, dataset)), rtol=1e-5)


def test_docs_command_example_runs(tmp_path, run_cli):
    docs = (Path(__file__).resolve().parents[1] / 'docs' / 'reconstructions.md').read_text()
    line = next(raw for raw in docs.splitlines() if raw.startswith('$ convert_to_ptychodus_product '))
    args = line.split()[2:]
    obj = linear_object((90, 100))
    x, y = _scan(fractional=False)
    dataset = _dataset(tmp_path, obj, x, y)
    dataset.rename(tmp_path / 'test.npz')
    (tmp_path / 'recons' / 'pinn').mkdir(parents=True)
    grid_lines_recon(tmp_path / 'recons' / 'pinn' / 'recon.npz', stitch(cut_patches(obj, x, y, N), x, y, m=N))
    done = run_cli(*args, '--stitch-crop-size', str(N), script=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'pinn.h5').is_file()


# -- real data -----------------------------------------------------------------------------------------


def test_run1084_stitched_as_ptychopinn_would_lands_on_its_own_pixels(shared_data, tmp_path):
    path = shared_data / 'run1084_recon3_postPC.npz'
    with np.load(path, allow_pickle=False) as npz:
        obj, x, y = npz['objectGuess'], npz['xcoords'], npz['ycoords']
        n = npz['probeGuess'].shape[-1]
    keep = slice(None, None, 4)  # every 4th position: the same rule, a quarter of the work
    x, y = x[keep], y[keep]
    write_arrays(tmp_path / 'run.npz', {
        'probeGuess': np.load(path)['probeGuess'], 'objectGuess': obj, 'xcoords': x, 'ycoords': y,
    })
    canvas = stitch(cut_patches(obj, x, y, n), x, y, m=20)
    output = grid_lines_recon(tmp_path / 'recon.npz', canvas)

    paired = _pair(tmp_path, tmp_path / 'run.npz', output)

    origin = h5_attrs(paired)['ptychopinn_object_origin_px']
    rows, cols = np.nonzero(np.abs(canvas) > 0)
    # search the sub-pixel shift that best explains the canvas: it must be ours (< 0.05 px). The
    # median, since pixels at the edges of the stitched crops are biased by the normalisation.
    shifts = np.round(np.arange(-0.3, 0.301, 0.02), 6)
    errors = [[np.median(np.abs(canvas[rows, cols] - bilinear(obj, origin[0] + cols + dx, origin[1] + rows + dy)))
               for dx in shifts] for dy in shifts]
    best_y, best_x = np.unravel_index(np.argmin(errors), np.shape(errors))
    # cut and stitched with bilinear shifts, a real object comes back blurred, which biases this
    # estimate by a few hundredths of a pixel; the rule itself is pinned below with a linear object
    assert abs(shifts[best_x]) <= 0.1 and abs(shifts[best_y]) <= 0.1, (shifts[best_x], shifts[best_y])

    # run1084's own positions, an object bilinear interpolation reproduces: the rule, to 1e-3 px
    linear = linear_object(obj.shape)
    canvas = stitch(cut_patches(linear, x, y, n), x, y, m=20)
    output = grid_lines_recon(tmp_path / 'linear.npz', canvas)
    paired = _pair(tmp_path, tmp_path / 'run.npz', output, overwrite=True)
    origin = h5_attrs(paired)['ptychopinn_object_origin_px']
    rows, cols = np.nonzero(np.abs(canvas) > 0)
    residual = canvas[rows, cols] - bilinear(linear, origin[0] + cols, origin[1] + rows)
    # per pixel, the (dx, dy) that explains the residual (real slopes 0.01, 0.02; imaginary 0.003, -0.004)
    shift = np.linalg.solve(np.array([[0.01, 0.02], [0.003, -0.004]]), np.stack([residual.real, residual.imag]))
    assert np.all(np.abs(np.median(shift, axis=1)) < 1e-3), np.median(shift, axis=1)
