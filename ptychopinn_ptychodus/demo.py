"""``python -m ptychopinn_ptychodus.demo`` (what ``make demo`` runs); the demo itself is :mod:`.cli.demo`."""

from __future__ import annotations

from .cli.demo import main

__all__ = ['main']

if __name__ == '__main__':
    raise SystemExit(main())
