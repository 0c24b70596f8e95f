"""PtychoPINN NPZ datasets as first-class citizens of Ptychodus.

The converter core (this package minus :mod:`.plugin`, :mod:`.doctor` and the
bridge) needs only numpy and h5py; it never imports Ptychodus.
"""

from __future__ import annotations

__version__ = '0.1.0'

from .conversion import ExportMeta, ExportReport, ImportReport, export_product, import_product  # noqa: E402
from .errors import InvalidInputError, OutputError, PtychoPINNError  # noqa: E402
from .npz_format import Domain, Layout, open_dataset  # noqa: E402

#: The names in the seed's programmatic-access example.
export_product_from_npz = export_product
import_product_to_npz = import_product

__all__ = [
    'Domain',
    'ExportMeta',
    'ExportReport',
    'ImportReport',
    'InvalidInputError',
    'Layout',
    'OutputError',
    'PtychoPINNError',
    '__version__',
    'export_product',
    'export_product_from_npz',
    'import_product',
    'import_product_to_npz',
    'open_dataset',
]
