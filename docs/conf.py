"""Sphinx configuration: the Markdown pages (MyST), the API from docstrings, the CLI from its parsers.

Built by ``make docs`` with warnings as errors (``-W --keep-going``) into ``build/docs/html``.

Docstrings: **napoleon** (part of Sphinx) rather than numpydoc. Our docstrings use NumPy's section
headers (``Parameters`` + underline) with short ``name: meaning`` entries and no separate type
lines -- the types are in the signatures. napoleon reads that form as it is and needs no extra
package; numpydoc expects ``name : type`` lines and would render our entries as parameter names.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives

import ptychopinn_ptychodus

project = 'ptychopinn-ptychodus'
author = 'ptychopinn-ptychodus contributors'
copyright = 'the ptychopinn-ptychodus contributors, BSD-3-Clause'  # noqa: A001 - Sphinx's name
release = ptychopinn_ptychodus.__version__

extensions = ['myst_parser', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', 'benchmark_results.md']  # included by benchmark.md, not a page of its own
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
html_theme = 'alabaster'
html_static_path: list[str] = []

HERE = Path(__file__).resolve().parent


class ArgparseHelp(Directive):
    """``{argparse-help} module:function`` renders ``function().format_help()`` as a literal block.

    The CLI reference is generated from the parsers the commands use, so it cannot drift;
    subparsers (``ptychopinn-ptychodus doctor`` ...) are rendered after their parent.
    """

    required_arguments = 1
    has_content = False
    option_spec = {'prog': directives.unchanged}

    def run(self) -> list[nodes.Node]:
        module_name, _, function = self.arguments[0].partition(':')
        parser: argparse.ArgumentParser = getattr(importlib.import_module(module_name), function)()
        if 'prog' in self.options:
            parser.prog = self.options['prog']
        texts = [parser.format_help()]
        for action in parser._actions:  # argparse has no public accessor for subparsers
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    sub.prog = f'{parser.prog} {name}'
                    texts.append(sub.format_help())
        blocks: list[nodes.Node] = []
        for text in texts:
            block = nodes.literal_block(text, text)
            block['language'] = 'text'
            blocks.append(block)
        return blocks


def setup(app: Any) -> dict[str, Any]:
    app.add_directive('argparse-help', ArgparseHelp)
    return {'parallel_read_safe': True}
