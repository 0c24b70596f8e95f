"""Copy the GUI screenshots the docs show from a real-GUI test run into docs/_static/screenshots.

Run by ``make screenshots`` after ``tests/test_gui.py`` wrote them (``TEST_ARTIFACTS_DIR``).
Each picture is scaled to at most ``MAX_WIDTH`` pixels wide with Qt (the GUI's own library,
installed in ``.venv``) so that a committed PNG stays well under ``MAX_BYTES``; a missing or
oversized picture is an error, so the docs never show a stale or absent screenshot silently.

Usage: ``python docs/_tools/copy_screenshots.py SOURCE_DIR DEST_DIR``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')

from PyQt5.QtCore import Qt  # noqa: E402 - after the platform is chosen
from PyQt5.QtGui import QImage  # noqa: E402

#: The screenshots docs/ptychodus_gui.md and README.md show, as tests/test_gui.py names them.
SHOWN = ('gui_open_dialog.png', 'gui_products.png', 'gui_object.png', 'gui_probe.png', 'gui_positions.png')
MAX_WIDTH = 1000
MAX_BYTES = 200_000


def copy(source: Path, dest: Path) -> list[str]:
    """Scale and write each shown screenshot; return one line per file written.

    Parameters
    ----------
    source: the folder the GUI tests wrote their screenshots into
    dest: docs/_static/screenshots
    """
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in SHOWN:
        image = QImage(str(source / name))
        if image.isNull():
            raise SystemExit(f'copy_screenshots: {source / name}: missing or not a PNG '
                             '(did the GUI tests run?)')
        if image.width() > MAX_WIDTH:
            image = image.scaledToWidth(MAX_WIDTH, Qt.TransformationMode.SmoothTransformation)
        target = dest / name
        if not image.save(str(target), 'PNG', 0):  # quality 0: smallest file, lossless
            raise SystemExit(f'copy_screenshots: {target}: could not write')
        size = target.stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f'copy_screenshots: {target}: {size} bytes, more than {MAX_BYTES}')
        lines.append(f'{target}: {image.width()}x{image.height()} px, {size // 1000} kB')
    return lines


if __name__ == '__main__':
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    for line in copy(Path(sys.argv[1]), Path(sys.argv[2])):
        print(line)
