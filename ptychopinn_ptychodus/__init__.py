"""PtychoPINN NPZ datasets as first-class citizens of Ptychodus.

The converter core (this package minus :mod:`.plugin`, :mod:`.compat`,
:mod:`.doctor`, :mod:`.demo` and the bridge) needs only numpy and h5py; it
never imports Ptychodus.
"""

from __future__ import annotations

from ._version import __version__
from .convert.batch import ConversionResult, convert_many
from .convert.export import ExportOptions, ExportReport, export_product
from .convert.importer import ImportReport, import_product
from .convert.rawdata import PtychoPINNRawData, export_product_from_rawdata, import_product_to_rawdata
from .facts.errors import InvalidInputError, OutputError, PtychoPINNError
from .facts.geometry import ObjectPlacement, PositionConvention
from .facts.quantities import QUANTITIES, ExportMeta
from .facts.stack import Domain, Layout
from .npz.dataset import open_dataset

__all__ = [
    'QUANTITIES',
    'ConversionResult',
    'Domain',
    'ExportMeta',
    'ExportOptions',
    'ExportReport',
    'ImportReport',
    'InvalidInputError',
    'Layout',
    'ObjectPlacement',
    'OutputError',
    'PositionConvention',
    'PtychoPINNError',
    'PtychoPINNRawData',
    '__version__',
    'convert_many',
    'export_product',
    'export_product_from_rawdata',
    'import_product',
    'import_product_to_rawdata',
    'open_dataset',
]
