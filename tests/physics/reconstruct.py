"""Reconstruct PtychoPINN data in headless Ptychodus 1.7 with pty-chi (physics check, issue 11).

Run as a script (pty-chi runs in a *spawned* subprocess, so this module keeps
all work under ``if __name__ == '__main__':``)::

    python reconstruct.py jobs.json

``jobs.json`` is a list of jobs; each is a dict with

* ``name``            label
* ``input``           the file to open (NPZ or product HDF5)
* ``file_type``       Ptychodus simple name for both the diffraction and the
                      product reader (``PtychoPINN_NPZ``, ``PtychoPINN_Product_H5``,
                      ``SLAC_NPZ``, ...)
* ``algorithm``       default ``pty-chi_lsqml``
* ``epochs``          default 100
* ``batch_size``      default 64
* ``fix_probe``       default false: the probe is not optimised
                      (``PtyChiProbe.IsOptimizable = False``)
* ``crop_px``         default none (cropping off); an integer crops every
                      pattern to a ``crop_px`` square centred on pixel ``crop_px//2``
                      (Ptychodus's own default is 64 centred on 32), i.e. the full
                      pattern when ``crop_px`` equals the pattern size
* ``output``          ``.npz`` written with the result (see below)

The script prints one JSON line per job (timings, or ``error`` if the job
raised; later jobs still run) after a first line with ``core_start_s``.

All jobs run one after the other in one ``ModelCore`` (started once: importing
torch and probing devices costs ~10 s); no settings file is read, and every job
sets all the settings it relies on. Each job loads its own diffraction dataset
and product (new repository entries). Settings applied: diffraction cropping as above,
``PtyChi.UseDevices = False`` (CPU), ``NumEpochs``, ``BatchSize``,
``NumSyncEpochs = NumEpochs`` (the result is handed back once, at the end); position
correction stays off (Ptychodus's default); everything else is Ptychodus's
default (LSQML: Gaussian noise model, probe intensity rescaled in the first
epoch).

Output ``.npz`` keys: ``object`` (complex, first layer of the reconstructed
object, Ptychodus's array orientation ``[row, column]``), ``probe`` (first mode),
``object_in`` (object of the product before reconstruction), ``pixel_width_m``,
``pixel_height_m``, ``center_x_m``, ``center_y_m`` (of the reconstructed
object), ``positions_x_px``/``positions_y_px`` (the probe positions mapped to
object pixels by Ptychodus's own ``ObjectGeometry``), ``losses``,
``seconds`` (wall time of ``reconstruct_local``; the JSON line also gives
``reconstruct_cpu_s``, CPU time including pty-chi's subprocess), ``pattern_shape``,
``pattern_sum_mean`` (mean summed intensity per pattern as Ptychodus sees it).
Nothing is asserted here; ``test_physics.py`` does that.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children (the pty-chi worker)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run_job(core: Any, job: dict[str, Any]) -> dict[str, Any]:
    src = Path(job['input'])
    file_type = job['file_type']
    out = Path(job['output'])
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    # Ptychodus only warns on an unknown file type and keeps the previous reader: refuse that.
    registry = core.plugin_registry
    for chooser in (registry.diffraction_file_readers, registry.product_file_readers):
        if chooser.find_plugin(file_type) is None:
            raise RuntimeError(f'{file_type!r} is not registered ({chooser.stringify_plugin_names()})')
    epochs = int(job.get('epochs', 100))
    diffraction_settings = core.diffraction_core.diffraction_settings
    crop_px = job.get('crop_px')
    diffraction_settings.crop_enabled.set_value(crop_px is not None)
    if crop_px is not None:  # a crop_px x crop_px window centred on pixel crop_px//2
        diffraction_settings.beam_center_x_px.set_value(int(crop_px) // 2)
        diffraction_settings.beam_center_y_px.set_value(int(crop_px) // 2)
        diffraction_settings.crop_width_px.set_value(int(crop_px))
        diffraction_settings.crop_height_px.set_value(int(crop_px))
    lib = core.ptychi_reconstructor_library
    lib.settings.num_epochs.set_value(epochs)
    lib.settings.num_sync_epochs.set_value(epochs)  # one hand-back at the end
    lib.settings.batch_size.set_value(int(job.get('batch_size', 64)))
    lib.settings.use_devices.set_value(False)
    lib.probe_settings.is_optimizable.set_value(not job.get('fix_probe', False))
    lib.probe_position_settings.is_optimizable.set_value(False)

    ds = core.workflow_api.load_diffraction_data(src, file_type=file_type, block=True)
    product = core.workflow_api.load_product(src, file_type=file_type, diffraction=ds)
    core.run_tasks()
    assembled = ds.get_assembled_data()
    pattern_shape = assembled.get_patterns_shape()
    pattern_sums = [float(np.sum(assembled.get_pattern(i), dtype=float)) for i in range(pattern_shape[0])]
    object_in = np.array(product.get_product().object_.get_layer(0))
    timings['load_s'] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    result_api = product.reconstruct_local(algorithm=job.get('algorithm', 'pty-chi_lsqml'), block=True)
    core.run_tasks()
    timings['reconstruct_s'] = time.perf_counter() - t0
    timings['reconstruct_cpu_s'] = _cpu_seconds() - cpu0

    result = result_api.get_product()
    obj = result.object_
    geometry = obj.get_geometry()
    center = obj.get_center()
    pixels = obj.get_pixel_geometry()
    positions = result.probe_positions
    probes = np.asarray(result.probes.get_array())
    np.savez(
        out,
        object=obj.get_layer(0),
        probe=probes[(0,) * (probes.ndim - 2)],
        object_in=object_in,
        pixel_width_m=pixels.width_m,
        pixel_height_m=pixels.height_m,
        center_x_m=center.x_m,
        center_y_m=center.y_m,
        positions_x_px=geometry.map_probe_positions_to_object_x_px(positions),
        positions_y_px=geometry.map_probe_positions_to_object_y_px(positions),
        losses=np.array([loss.value for loss in result.losses], dtype=float),
        seconds=timings['reconstruct_s'],
        pattern_shape=np.array(pattern_shape),
        pattern_sum_mean=float(np.mean(pattern_sums)),
    )
    return {'name': job['name'], 'output': str(out), **timings}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    jobs = json.loads(Path(argv[1]).read_text(encoding='utf-8'))
    t0 = time.perf_counter()
    from ptychodus.model import ModelCore

    with ModelCore() as core:
        print(json.dumps({'core_start_s': time.perf_counter() - t0}), flush=True)
        for job in jobs:
            try:
                info = _run_job(core, job)
            except Exception as exc:  # recorded; the test decides what a failure means
                logging.getLogger(__name__).exception('job %s failed', job['name'])
                last_line = [line for line in str(exc).splitlines() if line.strip()][-1:] or ['']
                info = {'name': job['name'], 'error': f'{type(exc).__name__}: {last_line[0]}'}
            print(json.dumps(info), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
