"""PtychoPINN NPZ datasets as first-class citizens of Ptychodus.

The converter core (this package minus :mod:`.plugin`, :mod:`.compat`,
:mod:`.doctor`, :mod:`.demo` and the bridge) needs only numpy and h5py; it
never imports Ptychodus.
"""

from __future__ import annotations

from ._version import __version__
from .batch import ConversionResult, convert_many
from .errors import InvalidInputError, OutputError, PtychoPINNError
from .export import ExportOptions, ExportReport, export_product
from .geometry import PositionConvention
from .npz_format import open_dataset
from .product_import import ImportReport, import_product
from .quantities import QUANTITIES, ExportMeta
from .rawdata import PtychoPINNRawData, export_product_from_rawdata, import_product_to_rawdata
from .stack import Domain, Layout

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
