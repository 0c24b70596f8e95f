"""Builders that write PtychoPINN's files the way PtychoPINN's own code writes them (issue 18).

One builder per upstream writer; each docstring names the file of hoidn/PtychoPINN it
imitates (read in a snapshot; PtychoPINN is GPL-3 and never a test dependency, so this is
our own code that writes the same keys, dtypes, shapes and containers). Inputs are small
deterministic arrays; the builders only reproduce what the writer does to them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

Arrays = dict[str, np.ndarray]


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.random(shape) + 1j * rng.random(shape)).astype(np.complex64)


def count_source(num: int = 12, n: int = 16, seed: int = 0, obj_px: int = 64) -> Arrays:
    """A raw experimental-style file: uint16 photon counts under ``diff3d``, positions inside the object."""
    rng = np.random.default_rng(seed)
    return {
        'diff3d': rng.integers(0, 900, size=(num, n, n)).astype(np.uint16),
        'probeGuess': _complex(rng, (n, n)),
        'objectGuess': np.exp(1j * rng.random((obj_px, obj_px + 2))).astype(np.complex64),
        'xcoords': rng.uniform(n, obj_px - n, num),
        'ycoords': rng.uniform(n, obj_px - n, num),
        'xcoords_start': rng.uniform(n, obj_px - n, num),
        'ycoords_start': rng.uniform(n, obj_px - n, num),
        'scan_index': np.zeros(num, dtype=np.int64),
    }


def save_with_metadata(path: Path, arrays: Arrays, metadata: dict[str, Any] | None) -> Path:
    """``ptycho/metadata.py`` ``MetadataManager.save_with_metadata``.

    JSON (``indent=2``) in a 0-d object array under ``_metadata`` (a pickle of one
    string), the whole dict written with ``np.savez_compressed``. ``None`` metadata
    is dumped too (the JSON text ``null``), as that code does.
    """
    save = dict(arrays)
    save['_metadata'] = np.array(json.dumps(metadata, indent=2), dtype=object)
    np.savez_compressed(path, **save)
    return path


def transpose_rename_convert(path: Path, source: Arrays, metadata: dict[str, Any] | None = None) -> Path:
    """``scripts/tools/transpose_rename_convert_tool.py`` (``transpose_rename_convert``).

    ``diff3d`` is renamed ``diffraction``; a 4-D ``Y`` (.., 1) is squeezed; every uint16
    array becomes float32 -- counts stay counts (no square root); a transformation
    record is appended to the metadata; saved with ``save_with_metadata``.
    """
    out: Arrays = {}
    for key, value in source.items():
        arr = np.array(value, copy=True)
        new_key = 'diffraction' if key == 'diff3d' else key
        if key == 'Y' and arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr.squeeze(axis=-1)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.float32)
        out[new_key] = arr
    meta = dict(metadata or {})
    meta.setdefault('transformations', []).append(
        {'tool': 'transpose_rename_convert', 'operation': 'canonicalize',
         'parameters': {'flipx': False, 'flipy': False}}
    )
    return save_with_metadata(path, out, meta)


def synthetic_truth_counts(path: Path, *, num: int = 12, n: int = 16, modes: int | None = None,
                           seed: int = 1) -> tuple[Path, Arrays]:
    """``scripts/studies/make_synthetic_truth_datasets.py`` (``generate_ci_count_dataset``, ``build_one``).

    uint16 Poisson counts under ``diff3d``, a complex64 probe (N, N) -- or (P, N, N)
    when the raw probe has modes --, ``ground_truth_patches`` (M, N, N, 1),
    ``xcoords_start`` = copies, ``scan_index`` zeros, ``_metadata`` JSON with
    ``measurement_domain = 'count_intensity'`` (``sort_keys=True``); saved with ``np.savez``.
    """
    rng = np.random.default_rng(seed)
    obj = np.exp(1j * rng.random((4 * n, 4 * n))).astype(np.complex64)
    x = rng.uniform(n, 3 * n, num)
    y = rng.uniform(n, 3 * n, num)
    probe = _complex(rng, (n, n) if modes is None else (modes, n, n))
    metadata = {
        'schema_version': '1.0.0',
        'scale_contract_version': 'ci-count-v1',
        'measurement_domain': 'count_intensity',
        'probe_gauge': 'physical_calibrated',
        'object_units': 'absolute',
        'poisson_sampling': {'status': 'fresh', 'seed': seed},
    }
    payload = {
        'xcoords': x,
        'ycoords': y,
        'xcoords_start': x.copy(),
        'ycoords_start': y.copy(),
        'diff3d': rng.poisson(40.0, size=(num, n, n)).astype(np.uint16),
        'probeGuess': probe,
        'objectGuess': obj,
        'scan_index': np.zeros(num, dtype=np.int64),
        'ground_truth_patches': _complex(rng, (num, n, n))[..., None],
        '_metadata': np.array(json.dumps(metadata, sort_keys=True), dtype=object),
    }
    np.savez(path, **payload)
    return path, payload


def integration_fixture(path: Path, *, num: int = 64, n: int = 64, seed: int = 2) -> tuple[Path, Arrays]:
    """``scripts/tools/make_pytorch_integration_fixture.py`` (``minimal_dataset_v1.npz``).

    A float32 (M, N, N) stack -- (64, 64, 64) for the shipped fixture -- under both
    ``diffraction`` and ``diff3d`` (same array), complex64 guesses, subsetted
    coordinates, ``np.savez_compressed``, and a same-stem provenance JSON
    (``version``, ``created``, ``generator_script``, ... -- none of them our keys).
    """
    rng = np.random.default_rng(seed)
    stack = (rng.random((num, n, n)) * 2 + 0.01).astype(np.float32)
    arrays = {
        'diffraction': stack,
        'diff3d': stack,
        'objectGuess': np.exp(1j * rng.random((3 * n, 3 * n))).astype(np.complex64),
        'probeGuess': _complex(rng, (n, n)),
        'xcoords': rng.uniform(n, 2 * n, num),
        'ycoords': rng.uniform(n, 2 * n, num),
    }
    np.savez_compressed(path, **arrays)
    provenance = {
        'version': 'v1',
        'created': '2026-01-01T00:00:00+00:00',
        'generator_script': 'scripts/tools/make_pytorch_integration_fixture.py',
        'generator_commit': 'unknown',
        'source_dataset': 'datasets/Run1084_recon3_postPC_shrunk_3.npz',
        'subset_strategy': 'stratified_uniform_sampling',
        'subset_size': num,
        'transformations': ['diffraction: transpose (H,W,N) -> (N,H,W)'],
        'sha256_checksum': '0' * 64,
    }
    path.with_suffix('.json').write_text(json.dumps(provenance, indent=2), encoding='utf-8')
    return path, arrays


def _bin_complex(arr: np.ndarray, factor: int) -> np.ndarray:
    """``bin_complex_array``: mean over factor x factor blocks of the real and imaginary parts."""
    h, w = arr.shape
    hh, ww = -(-h // factor) * factor, -(-w // factor) * factor  # block_reduce pads (cval 0)
    padded = np.zeros((hh, ww), dtype=arr.dtype)
    padded[:h, :w] = arr
    blocks = padded.reshape(hh // factor, factor, ww // factor, factor)
    return (blocks.real.mean(axis=(1, 3)) + 1j * blocks.imag.mean(axis=(1, 3))).astype(arr.dtype)


def downsample(path: Path, source: Arrays, *, crop_factor: int = 2, bin_factor: int = 2) -> Path:
    """``scripts/tools/downsample_data_tool.py`` (``downsample_npz``).

    Crops only a ``diff3d`` stack; bins ``objectGuess`` and ``probeGuess`` by
    ``bin_factor``; scales the coordinates by ``1 / bin_factor``; saves with
    ``save_with_metadata``. On a ``diffraction``-key file the patterns keep their size
    while the probe shrinks.
    """
    data = {key: np.array(value, copy=True) for key, value in source.items()}
    if 'diff3d' in data:
        h, w = data['diff3d'].shape[1:]
        nh, nw = h // crop_factor, w // crop_factor
        top, left = (h - nh) // 2, (w - nw) // 2
        data['diff3d'] = data['diff3d'][:, top:top + nh, left:left + nw]
    for key in ('objectGuess', 'probeGuess'):
        if key in data:
            data[key] = _bin_complex(data[key], bin_factor)
    for key in ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start'):
        if key in data:
            data[key] = data[key] * (1.0 / bin_factor)
    return save_with_metadata(path, data, None)


def exporter_product(path: Path, raw: Arrays, *, object_pixel_m: float = 5e-8) -> Path:
    """``ptycho/io/ptychodus_product_io.py`` (``export_product_from_rawdata``, ``include_raw=True``).

    Metre positions ``xcoords * pixel`` (not centred), ``probe_position_indexes`` =
    ``scan_index``, probe pixel 125 nm, ``probe_energy_eV``/``mass_attenuation_m2_kg``
    spellings, and ``/raw_data`` with ``RawData.diff3d`` as given: a 3-D stack
    moved to NHW (the first axis whose length is M; ``original_axis_order`` NHW, HNW
    or HWN), any other rank (e.g. (M, N, N, 1)) unchanged and without the attribute;
    dtype unchanged (uint16 counts stay uint16, no domain attribute); gzip 4 + shuffle.
    """
    x_px, y_px = np.asarray(raw['xcoords']), np.asarray(raw['ycoords'])
    scan_index = np.asarray(raw.get('scan_index', np.zeros_like(x_px, dtype=np.int64)))
    with h5py.File(path, 'w') as f:
        for key, value in (('name', ''), ('comments', '')):
            f.attrs[key] = value
        for key in ('detector_object_distance_m', 'probe_energy_eV', 'probe_photon_count',
                    'exposure_time_s', 'mass_attenuation_m2_kg', 'tomography_angle_deg'):
            f.attrs[key] = 0.0
        f.create_dataset('probe_position_indexes', data=scan_index)
        f.create_dataset('probe_position_x_m', data=x_px * object_pixel_m)
        f.create_dataset('probe_position_y_m', data=y_px * object_pixel_m)
        probe = f.create_dataset('probe', data=np.asarray(raw['probeGuess']).astype(np.complex64))
        probe.attrs['pixel_width_m'] = probe.attrs['pixel_height_m'] = 1.25e-7
        obj = f.create_dataset('object', data=np.asarray(raw['objectGuess']).astype(np.complex64))
        obj.attrs['center_x_m'] = obj.attrs['center_y_m'] = 0.0
        obj.attrs['pixel_width_m'] = obj.attrs['pixel_height_m'] = object_pixel_m
        f.create_dataset('object_layer_spacing_m', data=np.array([], dtype=np.float64))
        f.create_dataset('loss_values', data=np.array([], dtype=np.float64))
        f.create_dataset('loss_epochs', data=np.array([], dtype=np.int64))
        f.attrs['bundle_version'] = '1.0'
        f.attrs['contains_raw_data'] = 1
        group = f.require_group('raw_data')
        diff = np.asarray(raw['diff3d'])
        order = None
        if diff.ndim == 3:
            matches = [axis for axis, size in enumerate(diff.shape) if size == x_px.shape[0]]
            axis = matches[0] if matches else 0
            order = ('NHW', 'HNW', 'HWN')[axis]
            diff = np.moveaxis(diff, axis, 0)
        dset = group.create_dataset('diffraction', data=diff, compression='gzip', compression_opts=4,
                                    shuffle=True)
        dset.attrs['axis_canonical'] = 'NHW'
        if order is not None:
            dset.attrs['original_axis_order'] = order
        group.create_dataset('xcoords', data=x_px.astype(np.float64))
        group.create_dataset('ycoords', data=y_px.astype(np.float64))
        group.create_dataset('scan_index', data=scan_index)
        group['probeGuess'] = f['probe']
        group['objectGuess'] = f['object']
    return path


def ptychovit_para(path: Path, *, num: int = 10, n: int = 16, pixel_size_m: float = 1.0,
                   seed: int = 3) -> tuple[Path, Arrays]:
    """``ptycho/interop/ptychovit/convert.py`` (``convert_npz_split_to_hdf5_pair``), the ``_para.hdf5``.

    Only ``object`` (1, H, W) complex64, ``probe`` (1, 1, N, N) complex64 (each with pixel
    size attributes, centre 0) and ``probe_position_x_m``/``_y_m`` (centred pixel
    coordinates times the pixel size): no root attributes, no
    ``probe_position_indexes``, no layer spacing, no losses.
    """
    rng = np.random.default_rng(seed)
    obj = np.exp(1j * rng.random((4 * n, 4 * n))).astype(np.complex64)
    probe = _complex(rng, (n, n))[np.newaxis, np.newaxis]
    x = rng.uniform(-n, n, num)
    y = rng.uniform(-n, n, num)
    with h5py.File(path, 'w') as f:
        dset = f.create_dataset('object', data=obj[np.newaxis])
        dset.attrs['pixel_height_m'] = dset.attrs['pixel_width_m'] = float(pixel_size_m)
        dset.attrs['center_x_m'] = dset.attrs['center_y_m'] = 0.0
        pdset = f.create_dataset('probe', data=probe)
        pdset.attrs['pixel_height_m'] = pdset.attrs['pixel_width_m'] = float(pixel_size_m)
        f.create_dataset('probe_position_x_m', data=x * float(pixel_size_m))
        f.create_dataset('probe_position_y_m', data=y * float(pixel_size_m))
    return path, {'objectGuess': obj, 'probeGuess': probe, 'x_px': x, 'y_px': y}


def grid_sample_translate(img: np.ndarray, offset_x: float, offset_y: float) -> np.ndarray:
    """``ptycho_torch/helper.py`` ``Translation`` re-implemented in numpy (one image).

    ``affine_grid`` (``align_corners=True``) places output pixel ``j`` at the normalised
    ``-1 + 2 j / (w - 1)``; the translation adds ``-offset * 2 / (w - 1)``;
    ``grid_sample`` (bilinear, zero padding, ``align_corners=True``) reads input pixel
    ``(g + 1) (w - 1) / 2``. Real and imaginary parts are sampled separately.
    """
    h, w = img.shape
    gx = -1 + 2 * np.arange(w) / (w - 1) - offset_x * 2.0 / (w - 1)
    gy = -1 + 2 * np.arange(h) / (h - 1) - offset_y * 2.0 / (h - 1)
    sx = (gx + 1) * (w - 1) / 2
    sy = (gy + 1) * (h - 1) / 2

    def weights(coords: np.ndarray, size: int) -> np.ndarray:
        """Bilinear weights (len(coords), size) with zero padding outside."""
        out = np.zeros((coords.size, size))
        lo = np.floor(coords).astype(int)
        frac = coords - lo
        for index, (low, f) in enumerate(zip(lo, frac, strict=True)):
            for pixel, weight in ((low, 1 - f), (low + 1, f)):
                if 0 <= pixel < size and weight:
                    out[index, pixel] += weight
        return out

    wy, wx = weights(sy, h), weights(sx, w)
    real = wy @ img.real.astype(np.float64) @ wx.T
    imag = wy @ img.imag.astype(np.float64) @ wx.T
    return (real + 1j * imag).astype(np.complex64)


def datagen_patches(obj: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, n: int) -> np.ndarray:
    """``ptycho_torch/datagen/datagen.py`` ``get_image_patches`` (numpy, via :func:`grid_sample_translate`).

    Translates the whole object by ``((M_x - 1) / 2 - x, (M_y - 1) / 2 - y)`` and keeps
    the central ``[(M - N) // 2 :][:N]`` window.
    """
    m_y, m_x = obj.shape
    start_y, start_x = (m_y - n) // 2, (m_x - n) // 2
    patches = []
    for x, y in zip(xcoords, ycoords, strict=True):
        moved = grid_sample_translate(obj, (m_x - 1) / 2.0 - float(x), (m_y - 1) / 2.0 - float(y))
        patches.append(moved[start_y:start_y + n, start_x:start_x + n])
    return np.asarray(patches)


def torch_datagen(path: Path, *, obj_shape: tuple[int, int] = (64, 64), n: int = 16, num: int = 9,
                  seed: int = 4, integral_positions: bool = False) -> tuple[Path, Arrays]:
    """``ptycho_torch/datagen/datagen.py`` (``simulate_multiple_experiments`` -> ``synthetic_i.npz``).

    ``generate_simulated_data``: jittered grid positions (float32, rounded to 2
    decimals) with a buffer of N // 2; ``from_simulation``: patches from
    ``get_image_patches``, Poisson counts of |FFT(probe * patch)|^2 as float32 (whole
    numbers) under ``diff3d``; ``np.savez`` of ``diff3d``, ``label`` (the patches),
    ``objectGuess``, ``probeGuess`` (squeezed), ``xcoords``, ``ycoords``, ``probeName``
    -- no ``scan_index``, no ``xcoords_start``, no metadata.
    ``integral_positions`` puts positions on half-integers so that, if the patch is
    centred at index (N - 1) / 2 on them, the patch is exactly an object window.
    """
    rng = np.random.default_rng(seed)
    height, width = obj_shape
    obj = np.exp(1j * rng.random(obj_shape)).astype(np.complex64) * (1 + rng.random(obj_shape))
    obj = obj.astype(np.complex64)
    probe = _complex(rng, (n, n))
    grid = int(np.ceil(np.sqrt(num)))
    xs = np.linspace(n // 2, width - n // 2, grid)
    ys = np.linspace(n // 2, height - n // 2, grid)
    xx, yy = np.meshgrid(xs, ys)
    jitter = 0.3 * min(np.diff(xs).min(), np.diff(ys).min())
    x = np.round((xx.ravel() + rng.uniform(-jitter, jitter, grid**2))[:num].astype(np.float32), 2)
    y = np.round((yy.ravel() + rng.uniform(-jitter, jitter, grid**2))[:num].astype(np.float32), 2)
    if integral_positions:
        x = (np.floor(x) + 0.5).astype(np.float32)
        y = (np.floor(y) + 0.5).astype(np.float32)
    label = datagen_patches(obj, x, y, n)
    far = np.fft.fftshift(np.abs(np.fft.fft2(probe[None] * label)) ** 2, axes=(-2, -1))
    diff3d = rng.poisson(far / far.mean() * 20).astype(np.float32)
    arrays = {
        'diff3d': diff3d,
        'label': label,
        'objectGuess': obj,
        'probeGuess': probe,
        'xcoords': x,
        'ycoords': y,
        'probeName': np.asarray('probe_0'),
    }
    np.savez(path, **arrays)
    return path, arrays
