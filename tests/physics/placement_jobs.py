"""Reconstruct in headless Ptychodus 1.7 with pty-chi, then export the result both ways (placement test).

Run as a script (pty-chi spawns a subprocess, so all work is under ``__main__``)::

    python placement_jobs.py jobs.json

Each job (a dict): ``name``, ``input`` (a PtychoPINN NPZ, read with our
``PtychoPINN_NPZ`` diffraction and product readers), ``epochs``, ``batch_size``,
``crop_px`` (the pattern size: a crop window equal to the whole pattern),
``ptychodus_npz`` and ``product_h5`` (outputs). After the LSQML reconstruction
(probe optimised, positions fixed, CPU) the result is written

* with Ptychodus's own ``ptychodus.api.io.save_ptychopinn_training_data`` (the
  function Ptychodus's PtychoPINN reconstructors call to export training data;
  its ``xcoords`` are ``map_probe_positions_to_object_x_px``: Ptychodus pixels,
  the identity convention), given the ``ReconstructInput`` Ptychodus itself builds
  from the assembled patterns, their bad pixels and the result product;
* as a Ptychodus product HDF5 with Ptychodus's own ``HDF5`` product writer, which
  the test turns into a PtychoPINN NPZ with our ``ptychopinn-ptychodus
  training-data`` command (the ptychopinn convention).

One JSON line per job on stdout (``name``, seconds, or ``error``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def _run_job(core: Any, job: dict[str, Any]) -> dict[str, Any]:
    from ptychodus.api.io import save_ptychopinn_training_data
    from ptychodus.api.reconstruct import ReconstructInput

    src = Path(job['input'])
    epochs = int(job['epochs'])
    crop_px = int(job['crop_px'])
    settings = core.diffraction_core.diffraction_settings
    settings.crop_enabled.set_value(True)
    settings.beam_center_x_px.set_value(crop_px // 2)
    settings.beam_center_y_px.set_value(crop_px // 2)
    settings.crop_width_px.set_value(crop_px)
    settings.crop_height_px.set_value(crop_px)
    lib = core.ptychi_reconstructor_library
    lib.settings.num_epochs.set_value(epochs)
    lib.settings.num_sync_epochs.set_value(epochs)
    lib.settings.batch_size.set_value(int(job['batch_size']))
    lib.settings.use_devices.set_value(False)
    lib.probe_settings.is_optimizable.set_value(True)
    lib.probe_position_settings.is_optimizable.set_value(False)

    ds = core.workflow_api.load_diffraction_data(src, file_type='PtychoPINN_NPZ', block=True)
    product = core.workflow_api.load_product(src, file_type='PtychoPINN_NPZ', diffraction=ds)
    core.run_tasks()
    t0 = time.perf_counter()
    result_api = product.reconstruct_local(algorithm='pty-chi_lsqml', block=True)
    core.run_tasks()
    seconds = time.perf_counter() - t0
    result = result_api.get_product()
    assembled = ds.get_assembled_data()
    save_ptychopinn_training_data(
        Path(job['ptychodus_npz']),
        ReconstructInput(assembled.get_patterns(), assembled.get_bad_pixels(), result),
    )
    result_api.save_product(Path(job['product_h5']), file_type='HDF5')
    losses = [float(loss.value) for loss in result.losses]
    return {'name': job['name'], 'reconstruct_s': seconds, 'final_loss': losses[-1] if losses else None}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    jobs = json.loads(Path(argv[1]).read_text(encoding='utf-8'))
    from ptychodus.model import ModelCore

    with ModelCore() as core:
        for job in jobs:
            try:
                info = _run_job(core, job)
            except Exception as exc:  # recorded; the test decides
                logging.getLogger(__name__).exception('job %s failed', job['name'])
                info = {'name': job['name'], 'error': f'{type(exc).__name__}: {exc}'.splitlines()[0]}
            print(json.dumps(info), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
