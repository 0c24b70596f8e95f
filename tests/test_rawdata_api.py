"""PtychoPINN's in-memory API: ``export_product_from_rawdata``, ``import_product_to_rawdata``, ``ExportMeta``.

Issue 9: PtychoPINN's data-management guide ("Programmatic Access") calls these
three names with ``RawData`` objects. The in-memory export must write the very
product the file export writes for the same arrays; the import returns
PtychoPINN's ``RawData`` when ``ptycho.raw_data`` can be imported, else a plain
object with RawData's attribute names, and neither call imports TensorFlow by
itself. Whatever needs a clean interpreter (``sys.modules``, a fake PtychoPINN on
``sys.path``) runs in a fresh subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import cli_env, h5_attrs

from ptychopinn_ptychodus import (
    ExportMeta,
    PtychoPINNRawData,
    export_product,
    export_product_from_rawdata,
    import_product_to_rawdata,
)

#: PtychoPINN's spellings on purpose (probe_energy_eV, mass_attenuation_m2_kg), anisotropic
#: pixels and an off-centre object, so every physics attribute is something other than a default.
META = ExportMeta(
    name=None,
    comments='in-memory vs file',
    detector_distance_m=1.5,
    probe_energy_eV=9000.0,
    exposure_time_s=0.1,
    probe_photon_count=1e9,
    mass_attenuation_m2_kg=2.5,
    tomography_angle_deg=30.0,
    object_pixel_width_m=4e-8,
    object_pixel_height_m=6e-8,
    probe_pixel_width_m=4e-8,
    probe_pixel_height_m=6e-8,
    object_center_x_m=1.3e-6,
    object_center_y_m=-0.7e-6,
    detector_pixel_size_m=7.5e-5,
)
METADATA = {'run': 1084, 'note': 'from RawData.metadata'}
#: Root attributes that name where a product came from, not what it holds: the file export
#: records the NPZ's name (``ptychopinn_source_file``, and ``name`` defaults to the NPZ's stem),
#: the in-memory export the object's type and the output's stem. Everything else must match.
SOURCE_NAMING_ATTRS = frozenset({'name', 'ptychopinn_source_file'})
#: ``RawData``'s attributes (PtychoPINN's ``ptycho.raw_data.RawData``), constructor order, plus metadata.
RAWDATA_NAMES = ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start', 'diff3d', 'probeGuess',
                 'scan_index', 'objectGuess', 'Y', 'norm_Y_I', 'metadata')


def pickled_metadata(values: dict[str, Any]) -> np.ndarray:
    """``_metadata`` as PtychoPINN stores it in an NPZ: a pickled object array holding a JSON string."""
    return np.array(json.dumps(values), dtype=object)


def rawdata_namespace(arrays: dict[str, np.ndarray], stack_key: str = 'diffraction', **extra: Any) -> Any:
    """An object with RawData's attribute names (``diff3d`` = the amplitude stack)."""
    return SimpleNamespace(
        xcoords=arrays['xcoords'],
        ycoords=arrays['ycoords'],
        xcoords_start=arrays['xcoords_start'],
        ycoords_start=arrays['ycoords_start'],
        diff3d=arrays[stack_key],
        probeGuess=arrays['probeGuess'],
        objectGuess=arrays['objectGuess'],
        scan_index=arrays['scan_index'],
        Y=None,
        norm_Y_I=None,
        metadata=dict(METADATA),
        **extra,
    )


def product_contents(path: Path) -> tuple[dict[str, h5py.Dataset], dict[str, dict[str, Any]]]:
    """Every dataset (values, dtype, storage) and every object's attributes, hard links included."""
    datasets: dict[str, Any] = {}
    attrs: dict[str, dict[str, Any]] = {}
    with h5py.File(path, 'r') as h5:

        def walk(group: h5py.Group, prefix: str) -> None:
            attrs[prefix or '/'] = dict(group.attrs)
            for key in group:
                item, name = group[key], f'{prefix}/{key}'
                if isinstance(item, h5py.Group):
                    walk(item, name)
                else:
                    datasets[name] = (item[()], item.dtype, item.shape, item.chunks, item.compression)
                    attrs[name] = dict(item.attrs)

        walk(h5, '')
    return datasets, attrs


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.hasobject:
        return bool(np.array_equal(a, b))
    return a.tobytes() == b.tobytes()


def assert_same_product(from_file: Path, from_memory: Path) -> None:
    """Every dataset bit for bit (dtype, shape, chunks, compression), every attribute bit for bit
    except the root attributes that name the source (:data:`SOURCE_NAMING_ATTRS`)."""
    file_sets, file_attrs = product_contents(from_file)
    memory_sets, memory_attrs = product_contents(from_memory)
    assert sorted(memory_sets) == sorted(file_sets)
    for name, (values, *storage) in file_sets.items():
        got, *got_storage = memory_sets[name]
        assert got_storage == storage, f'{name}: storage {got_storage} != {storage}'
        assert same_bits(got, values), f'{name}: values differ'
    assert sorted(memory_attrs) == sorted(file_attrs)
    for name, expected in file_attrs.items():
        got = memory_attrs[name]
        skip = SOURCE_NAMING_ATTRS if name == '/' else frozenset()
        assert sorted(set(got) - skip) == sorted(set(expected) - skip), name
        for key in set(expected) - skip:
            assert same_bits(got[key], expected[key]), f'{name} attribute {key}: {got[key]!r} != {expected[key]!r}'


# -- 1. the in-memory export writes the file export's product ---------------------------------------


def test_dict_export_is_the_file_export(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    npz = npz_from_arrays('run.npz', _metadata=pickled_metadata(METADATA), **arrays)

    export_product(npz, tmp_path / 'from_file.h5', META)
    export_product_from_rawdata({**arrays, 'metadata': dict(METADATA)}, tmp_path / 'from_dict.h5', META)

    assert_same_product(tmp_path / 'from_file.h5', tmp_path / 'from_dict.h5')
    with h5py.File(tmp_path / 'from_dict.h5', 'r') as h5:
        assert json.loads(h5['raw_data/_metadata'][()]) == METADATA


def test_rawdata_object_export_is_the_file_export(sample_npz, npz_from_arrays, tmp_path):
    """RawData's names: ``diff3d`` is the amplitude stack; ``Y`` and ``norm_Y_I`` (model inputs) are
    not part of a product, so the NPZ twin simply lacks them."""
    _, arrays = sample_npz()
    stack = arrays.pop('diffraction')
    npz = npz_from_arrays('run.npz', diff3d=stack, _metadata=pickled_metadata(METADATA), **arrays)
    raw = rawdata_namespace({**arrays, 'diff3d': stack}, stack_key='diff3d')
    raw.Y = np.ones((len(stack), 16, 16, 1), np.complex64)
    raw.norm_Y_I = np.float32(2.0)

    export_product(npz, tmp_path / 'from_file.h5', META)
    export_product_from_rawdata(raw, tmp_path / 'from_rawdata.h5', META)  # positional, as PtychoPINN calls

    assert_same_product(tmp_path / 'from_file.h5', tmp_path / 'from_rawdata.h5')


def test_npzfile_mapping_export_is_the_file_export(sample_npz, tmp_path):
    npz, _ = sample_npz('run.npz', key='diff3d', counts=True)

    export_product(npz, tmp_path / 'from_file.h5', META)
    with np.load(npz) as loaded:
        export_product_from_rawdata(loaded, tmp_path / 'from_npzfile.h5', META, include_raw=True)

    assert_same_product(tmp_path / 'from_file.h5', tmp_path / 'from_npzfile.h5')


def test_npzfile_mapping_keeps_a_plain_string_metadata(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    npz = npz_from_arrays('run.npz', _metadata=np.array(json.dumps(METADATA)), **arrays)  # '<U', no pickle

    export_product(npz, tmp_path / 'from_file.h5', META)
    with np.load(npz) as loaded:
        export_product_from_rawdata(loaded, tmp_path / 'from_npzfile.h5', META)

    assert_same_product(tmp_path / 'from_file.h5', tmp_path / 'from_npzfile.h5')


def test_in_memory_export_replaces_an_existing_file(sample_npz, tmp_path):
    _, arrays = sample_npz()
    out = tmp_path / 'p.h5'
    out.write_bytes(b'an older product')

    export_product_from_rawdata(arrays, out, ExportMeta(name='replaced'))

    assert h5_attrs(out)['name'] == 'replaced'


# -- 2. import_product_to_rawdata gives RawData's arrays back ----------------------------------------


@pytest.mark.parametrize('flavour', ['amplitude-NHW', 'amplitude-HWN', 'counts-uint16'])
def test_rawdata_round_trip(sample_npz, tmp_path, flavour):
    _, arrays = sample_npz(key='diff3d', counts=flavour.startswith('counts'))
    stack = arrays['diff3d']
    amplitude = np.sqrt(stack.astype(np.float64)).astype(np.float32) if stack.dtype.kind == 'u' else stack
    if flavour.endswith('HWN'):
        arrays['diff3d'] = np.ascontiguousarray(np.moveaxis(stack, 0, -1))
    raw = rawdata_namespace(arrays, stack_key='diff3d')

    export_product_from_rawdata(raw, tmp_path / 'p.h5', META)
    back = import_product_to_rawdata(tmp_path / 'p.h5')

    for key in ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start'):
        np.testing.assert_allclose(getattr(back, key), arrays[key], rtol=0, atol=1e-9, err_msg=key)
    assert back.diff3d.dtype == np.float32
    assert back.diff3d.shape == amplitude.shape  # NHW whatever the layout given
    np.testing.assert_allclose(back.diff3d, amplitude, rtol=1e-6, atol=0)
    for key in ('probeGuess', 'objectGuess'):
        value = getattr(back, key)
        assert value.dtype == arrays[key].dtype and np.array_equal(value, arrays[key]), key
    assert back.scan_index.dtype == np.int64
    np.testing.assert_array_equal(back.scan_index, arrays['scan_index'])
    assert back.metadata == METADATA


def test_plain_rawdata_has_exactly_rawdatas_names(sample_npz, tmp_path):
    _, arrays = sample_npz()
    export_product_from_rawdata(arrays, tmp_path / 'p.h5', include_raw=False)

    back = import_product_to_rawdata(tmp_path / 'p.h5', plain=True)

    assert type(back) is PtychoPINNRawData
    assert tuple(f.name for f in dataclasses.fields(PtychoPINNRawData)) == RAWDATA_NAMES
    assert back.diff3d is None and back.metadata is None  # no bundle: nothing to fill them from
    np.testing.assert_allclose(back.xcoords, arrays['xcoords'], rtol=0, atol=1e-9)


# -- 3./4. no TensorFlow; PtychoPINN's RawData when it is importable ---------------------------------

#: Stand-ins for TensorFlow and PtychoPINN, written into a folder put on PYTHONPATH: importing
#: ``ptycho.raw_data`` imports ``tensorflow``, as PtychoPINN's own module does.
FAKE_RAW_DATA = '''
import tensorflow  # noqa: F401  (PtychoPINN's ptycho.raw_data imports TensorFlow)


class RawData:
    def __init__(self, xcoords, ycoords, xcoords_start, ycoords_start, diff3d, probeGuess,
                 scan_index, objectGuess=None, Y=None, norm_Y_I=None{metadata}):
        self.xcoords = xcoords
        self.ycoords = ycoords
        self.xcoords_start = xcoords_start
        self.ycoords_start = ycoords_start
        self.diff3d = diff3d
        self.probeGuess = probeGuess
        self.scan_index = scan_index
        self.objectGuess = objectGuess
        self.Y = Y
        self.norm_Y_I = norm_Y_I
        {store_metadata}
        self.made_by_fake_ptycho = True
'''


def write_fake_ptychopinn(folder: Path, *, with_metadata_parameter: bool = True) -> Path:
    """``tensorflow`` and ``ptycho.raw_data.RawData`` (PtychoPINN's constructor signature)."""
    (folder / 'tensorflow').mkdir(parents=True)
    (folder / 'tensorflow' / '__init__.py').write_text('__version__ = "fake"\n')
    (folder / 'ptycho').mkdir()
    (folder / 'ptycho' / '__init__.py').write_text('')
    source = FAKE_RAW_DATA.format(
        metadata=', metadata=None' if with_metadata_parameter else '',
        store_metadata='self.metadata = metadata' if with_metadata_parameter else 'pass',
    )
    (folder / 'ptycho' / 'raw_data.py').write_text(textwrap.dedent(source))
    return folder


def run_python(script: str, *, cwd: Path, pythonpath: Path | None = None) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter; it prints one JSON object as its last line."""
    env = cli_env(**({'PYTHONPATH': str(pythonpath)} if pythonpath else {}))
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f'rc={result.returncode}\nstdout={result.stdout}\nstderr={result.stderr}'
    return json.loads(result.stdout.strip().splitlines()[-1])


#: Exports from a dict and from a RawData-like object, imports the product back, reports sys.modules.
EXPORT_IMPORT = '''
import json, sys
from types import SimpleNamespace
import numpy as np
from ptychopinn_ptychodus import export_product_from_rawdata, import_product_to_rawdata
from ptychopinn_ptychodus.cli.sample import simulate

arrays = simulate(pattern_px=16, scan_side=3)
export_product_from_rawdata(dict(arrays, metadata={'run': 1}), 'from_dict.h5')
names = dict(arrays)
names['diff3d'] = names.pop('diffraction')
export_product_from_rawdata(SimpleNamespace(**names, metadata={'run': 1}), 'from_object.h5')
after_export = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'ptycho'))
raw = import_product_to_rawdata('from_object.h5', plain=PLAIN)
print(json.dumps({
    'after_export': after_export,
    'after_import': sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'ptycho')),
    'type': f'{type(raw).__module__}.{type(raw).__qualname__}',
    'fake': getattr(raw, 'made_by_fake_ptycho', False),
    'xcoords_equal': bool(np.allclose(raw.xcoords, arrays['xcoords'], rtol=0, atol=1e-9)),
    'diff3d': [str(raw.diff3d.dtype), list(raw.diff3d.shape)],
    'probe_equal': bool(np.array_equal(raw.probeGuess, arrays['probeGuess'])),
    'metadata': raw.metadata,
}))
'''


@pytest.mark.parametrize('plain', [False, True])
def test_neither_call_imports_tensorflow_without_ptychopinn(tmp_path, plain):
    # A fake ``tensorflow`` alone on the path: any attempt to import it would succeed and show.
    fakes = tmp_path / 'fakes'
    (fakes / 'tensorflow').mkdir(parents=True)
    (fakes / 'tensorflow' / '__init__.py').write_text('')

    got = run_python(EXPORT_IMPORT.replace('PLAIN', str(plain)), cwd=tmp_path, pythonpath=fakes)

    assert got['after_export'] == [] and got['after_import'] == [], got
    assert got['type'] == 'ptychopinn_ptychodus.convert.rawdata.PtychoPINNRawData'
    assert got['xcoords_equal'] and got['probe_equal'] and got['metadata'] == {'run': 1}
    assert got['diff3d'] == ['float32', [9, 16, 16]]


@pytest.mark.parametrize('with_metadata_parameter', [True, False], ids=['metadata-parameter', 'older-signature'])
def test_ptychopinns_rawdata_is_returned_when_importable(tmp_path, with_metadata_parameter):
    fakes = write_fake_ptychopinn(tmp_path / 'fakes', with_metadata_parameter=with_metadata_parameter)

    got = run_python(EXPORT_IMPORT.replace('PLAIN', 'False'), cwd=tmp_path, pythonpath=fakes)

    assert got['after_export'] == [], f'the export imported PtychoPINN or TensorFlow: {got}'
    assert got['type'] == 'ptycho.raw_data.RawData' and got['fake'], got
    assert 'ptycho.raw_data' in got['after_import']  # asked for RawData: imported then, and only then
    assert got['xcoords_equal'] and got['probe_equal'], got
    assert got['diff3d'] == ['float32', [9, 16, 16]]
    assert got['metadata'] == {'run': 1}  # set as an attribute when the constructor has no parameter


def test_plain_keyword_returns_the_plain_object_even_with_ptychopinn(tmp_path):
    fakes = write_fake_ptychopinn(tmp_path / 'fakes')

    got = run_python(EXPORT_IMPORT.replace('PLAIN', 'True'), cwd=tmp_path, pythonpath=fakes)

    assert got['type'] == 'ptychopinn_ptychodus.convert.rawdata.PtychoPINNRawData' and not got['fake']
    assert got['after_import'] == [], f'plain=True imported PtychoPINN or TensorFlow: {got}'
    assert got['xcoords_equal'] and got['metadata'] == {'run': 1}


# -- 5. ExportMeta under PtychoPINN's names -----------------------------------------------------------

#: PtychoPINN's ExportMeta fields (ptycho.io.ptychodus_product_io), with values, by its spellings.
PTYCHOPINN_FIELDS = {
    'detector_distance_m': 1.5,
    'probe_energy_eV': 9000.0,
    'exposure_time_s': 0.1,
    'probe_photon_count': 1e9,
    'mass_attenuation_m2_kg': 2.5,
    'tomography_angle_deg': 30.0,
    'object_pixel_width_m': 4e-8,
    'object_pixel_height_m': 6e-8,
    'probe_pixel_width_m': 1.25e-7,
    'probe_pixel_height_m': 1.25e-7,
    'object_center_x_m': 1e-6,
    'object_center_y_m': -1e-6,
}


def test_export_meta_takes_every_ptychopinn_field():
    meta = ExportMeta(name='My Reconstruction', comments='c', **PTYCHOPINN_FIELDS)

    assert (meta.name, meta.comments) == ('My Reconstruction', 'c')
    for key, value in PTYCHOPINN_FIELDS.items():
        assert getattr(meta, key) == value, key


def test_export_meta_both_spellings_are_one_quantity():
    theirs = ExportMeta(probe_energy_eV=9000.0, mass_attenuation_m2_kg=2.5)
    ours = ExportMeta(photon_energy_eV=9000.0, mass_attenuation_m2_per_kg=2.5)
    mixed = ExportMeta(probe_energy_eV=9000.0, mass_attenuation_m2_per_kg=2.5)

    assert theirs == ours == mixed
    for meta in (theirs, ours, mixed):
        assert meta.probe_energy_eV == meta.photon_energy_eV == 9000.0
        assert meta.mass_attenuation_m2_kg == meta.mass_attenuation_m2_per_kg == 2.5
        assert meta.given() == {'photon_energy_eV': 9000.0, 'mass_attenuation_m2_per_kg': 2.5}


def test_export_meta_without_arguments():
    meta = ExportMeta()

    assert meta.name is None and meta.comments is None and meta.given() == {}
    assert meta.probe_energy_eV is None and meta.object_pixel_width_m is None


def test_export_meta_unknown_keyword_fails_clearly():
    with pytest.raises(TypeError) as failure:
        ExportMeta(probe_energy_ev=8000.0)  # lower-case 'ev': a typo

    message = str(failure.value)
    assert 'probe_energy_ev' in message and 'unknown keyword' in message
    assert 'probe_energy_eV' in message  # the known spellings are listed
    assert '\n' not in message


def test_export_meta_overlay_across_spellings():
    base = ExportMeta(name='base', probe_energy_eV=8000.0, mass_attenuation_m2_kg=1.0)

    merged = base.overlay(ExportMeta(photon_energy_eV=9000.0, comments='later'))

    assert (merged.name, merged.comments) == ('base', 'later')
    assert merged.probe_energy_eV == 9000.0 and merged.mass_attenuation_m2_kg == 1.0
    assert base.probe_energy_eV == 8000.0  # immutable


def test_ptychopinn_spellings_land_in_the_product(sample_npz, tmp_path):
    _, arrays = sample_npz()

    export_product_from_rawdata(arrays, tmp_path / 'p.h5', ExportMeta(**PTYCHOPINN_FIELDS))

    root = h5_attrs(tmp_path / 'p.h5')
    assert root['probe_energy_eV'] == root['photon_energy_eV'] == 9000.0
    assert root['mass_attenuation_m2_kg'] == root['mass_attenuation_m2_per_kg'] == 2.5
    assert root['detector_object_distance_m'] == 1.5
    probe = h5_attrs(tmp_path / 'p.h5', 'probe')
    assert (probe['pixel_width_m'], probe['pixel_height_m']) == (1.25e-7, 1.25e-7)
    obj = h5_attrs(tmp_path / 'p.h5', 'object')
    assert (obj['pixel_width_m'], obj['pixel_height_m'], obj['center_x_m'], obj['center_y_m']) == (
        4e-8, 6e-8, 1e-6, -1e-6)


#: PtychoPINN's data-management guide, section "Programmatic Access", verbatim.
GUIDE_SNIPPET = '''\
from pathlib import Path
from ptycho.io.ptychodus_product_io import (
    ExportMeta,
    export_product_from_rawdata,
    import_product_to_rawdata,
)
from ptycho.raw_data import RawData

# Export RawData to HDF5 product
meta = ExportMeta(
    name="My Reconstruction",
    object_pixel_width_m=5e-8,
    object_pixel_height_m=5e-8,
    probe_pixel_width_m=1.25e-7,
    probe_pixel_height_m=1.25e-7,
)
export_product_from_rawdata(
    raw=my_rawdata,
    out_path=Path("outputs/my_product.h5"),
    meta=meta,
    include_raw=True,
)

# Import HDF5 product back to RawData
raw = import_product_to_rawdata(Path("outputs/my_product.h5"))
'''
#: The only change: our package's import line instead of PtychoPINN's module.
OUR_SNIPPET = GUIDE_SNIPPET.replace('from ptycho.io.ptychodus_product_io import', 'from ptychopinn_ptychodus import')
#: Builds ``my_rawdata`` (PtychoPINN's RawData, from the fake package) before the snippet runs.
SNIPPET_PREAMBLE = '''
import json
import numpy as np
from ptycho.raw_data import RawData
from ptychopinn_ptychodus.cli.sample import simulate

arrays = simulate(pattern_px=16, scan_side=3)
my_rawdata = RawData(arrays['xcoords'], arrays['ycoords'], arrays['xcoords_start'], arrays['ycoords_start'],
                     arrays['diffraction'], arrays['probeGuess'], arrays['scan_index'],
                     objectGuess=arrays['objectGuess'], metadata={'from': 'the guide'})
'''
SNIPPET_REPORT = '''
print(json.dumps({
    'type': f'{type(raw).__module__}.{type(raw).__qualname__}',
    'xcoords_equal': bool(np.allclose(raw.xcoords, arrays['xcoords'], rtol=0, atol=1e-9)),
    'diff3d_equal': bool(np.array_equal(raw.diff3d, arrays['diffraction'])),
    'metadata': raw.metadata,
}))
'''


def run_guide_snippet(tmp_path: Path) -> dict[str, Any]:
    assert OUR_SNIPPET != GUIDE_SNIPPET and 'ptycho.io' not in OUR_SNIPPET
    fakes = write_fake_ptychopinn(tmp_path / 'fakes')
    return run_python(SNIPPET_PREAMBLE + OUR_SNIPPET + SNIPPET_REPORT, cwd=tmp_path, pythonpath=fakes)


def test_guides_snippet_runs_with_our_import_line(tmp_path):
    (tmp_path / 'outputs').mkdir()

    got = run_guide_snippet(tmp_path)

    assert got == {'type': 'ptycho.raw_data.RawData', 'xcoords_equal': True, 'diff3d_equal': True,
                   'metadata': {'from': 'the guide'}}
    product = tmp_path / 'outputs' / 'my_product.h5'
    assert h5_attrs(product)['name'] == 'My Reconstruction'
    assert h5_attrs(product, 'probe')['pixel_width_m'] == 1.25e-7
    assert h5_attrs(product, 'object')['pixel_height_m'] == 5e-8


def test_guides_snippet_runs_in_a_fresh_folder(tmp_path):
    got = run_guide_snippet(tmp_path)

    assert got['type'] == 'ptycho.raw_data.RawData'
    assert (tmp_path / 'outputs' / 'my_product.h5').exists()
