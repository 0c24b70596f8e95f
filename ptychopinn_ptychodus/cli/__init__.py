"""The command line: the converter script, terminal plumbing, the demo and its simulated sample.

``ptychopinn_ptychodus.cli:run`` is the ``convert_to_ptychodus_product`` script
(its path kept from 0.2.0); the parser and the dispatch live in :mod:`.convert`.
"""

from __future__ import annotations

from .convert import EXIT_INTERRUPTED, build_parser, main, run

__all__ = ['EXIT_INTERRUPTED', 'build_parser', 'main', 'run']
