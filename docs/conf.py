"""Sphinx configuration: the Markdown pages (MyST), the API from docstrings, the CLI from its parsers.

Built by ``make docs`` with warnings as errors (``-W --keep-going``) into ``build/docs/html``.

Docstrings: our docstrings use NumPy's section header (``Parameters`` + underline) with short
``name: meaning`` entries and no type lines -- the types are in the signatures. Both numpydoc and
napoleon read the text after the colon as a *type* (the build showed "input_npz (the PtychoPINN
dataset.)"), so neither renders this form right. :func:`parameters_as_fields` below turns such a
section into Sphinx's own ``:param name: meaning`` fields before autodoc renders it, and
``autodoc_typehints = 'description'`` adds the types from the signatures.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from sphinx.util import logging

import ptychopinn_ptychodus

project = 'ptychopinn-ptychodus'
author = 'ptychopinn-ptychodus contributors'
copyright = 'the ptychopinn-ptychodus contributors, BSD-3-Clause'  # noqa: A001 - Sphinx's name
release = ptychopinn_ptychodus.__version__

extensions = ['myst_parser', 'sphinx.ext.autodoc']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
# included by benchmark.md, not pages of their own
exclude_patterns = ['_build', 'benchmark_results.md', 'benchmark_paired.md']
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']
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


ENTRY = re.compile(r'^(?P<names>\*{0,2}\w+(?:\s*[/,]\s*\*{0,2}\w+)*):\s+(?P<meaning>.*)$')
logger = logging.getLogger(__name__)


def parameters_as_fields(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Rewrite a ``Parameters`` section of ``name: meaning`` lines as ``:param name: meaning`` fields.

    ``a / b: meaning`` documents two parameters alike; an entry's indented continuation lines
    stay with it; the section ends at a blank line. A line of another form in the section is a
    warning (an error under ``-W``), so a docstring that would render wrong fails the build.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        is_header = (lines[i].strip() == 'Parameters' and i + 1 < len(lines)
                     and set(lines[i + 1].strip()) == {'-'})
        if not is_header:
            out.append(lines[i])
            i += 1
            continue
        i += 2
        while i < len(lines) and lines[i].strip():
            entry = ENTRY.match(lines[i])
            if entry is None:
                logger.warning(f'{name}: a Parameters line not of the form "name: meaning": {lines[i]!r}')
                i += 1
                continue
            meaning = entry['meaning']
            i += 1
            while i < len(lines) and lines[i].startswith((' ', '\t')) and lines[i].strip():
                meaning += ' ' + lines[i].strip()
                i += 1
            for one in re.split(r'\s*[/,]\s*', entry['names']):
                out.append(f':param {one.lstrip("*")}: {meaning}')
        out.append('')
    lines[:] = out


def setup(app: Any) -> dict[str, Any]:
    app.add_directive('argparse-help', ArgparseHelp)
    app.connect('autodoc-process-docstring', parameters_as_fields)
    return {'parallel_read_safe': True}
