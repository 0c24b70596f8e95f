"""The package's folders are its layers: imports point only down, and nothing imports in a circle.

Layers, bottom to top (the README's architecture section draws the same):
``facts`` < ``safeio`` < ``npz`` < ``product`` < ``convert`` < ``host`` < ``cli``, with
the package root (``__init__``, ``__main__`` and the ``plugin``/``demo`` paths kept
for 0.2.0) above them all and ``_version`` below them all. Every import is read
from the source with :mod:`ast`, including imports inside functions, so a
"lazy" import cannot hide an upward dependency or a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ptychopinn_ptychodus

PACKAGE = Path(ptychopinn_ptychodus.__file__).resolve().parent
NAME = 'ptychopinn_ptychodus'
LAYERS = ['_version', 'facts', 'safeio', 'npz', 'product', 'convert', 'host', 'cli']
#: The core: what must run without Ptychodus installed.
CORE = {'_version', 'facts', 'safeio', 'npz', 'product', 'convert'}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join([NAME, *parts])


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module this file imports (inside the package or not)."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[: len(package.split('.')) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            found.add(target)
            # ``from . import compat`` imports a module, not a name
            for alias in node.names:
                candidate = f'{target}.{alias.name}'
                if _exists(candidate):
                    found.add(candidate)
    return found


def _exists(dotted: str) -> bool:
    if not dotted.startswith(NAME + '.'):
        return False
    rel = Path(*dotted.split('.')[1:])
    return (PACKAGE / rel).with_suffix('.py').is_file() or (PACKAGE / rel / '__init__.py').is_file()


def layer_of(module: str) -> int:
    """Index in LAYERS; the package root and its kept paths sit above every layer."""
    parts = module.split('.')
    if len(parts) == 1:
        return len(LAYERS)
    top = parts[1]
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}
GRAPH = {
    name: {dep for dep in imports_of(path) if dep in MODULES and dep != name and dep != NAME}
    for name, path in MODULES.items()
}


def test_every_module_lives_in_a_layer() -> None:
    """The root holds only the package's face: the API, ``-m`` and the two paths 0.2.0 promised."""
    root = sorted(n for n in MODULES if layer_of(n) == len(LAYERS) and n != NAME)
    assert root == [f'{NAME}.__main__', f'{NAME}.demo', f'{NAME}.plugin'], root


def test_each_layer_says_its_job() -> None:
    for layer in LAYERS[1:]:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / '__init__.py').read_text()))
        assert doc and doc.strip(), f'{layer}/__init__.py has no docstring saying its job'


@pytest.mark.parametrize('name', sorted(MODULES))
def test_imports_point_down(name: str) -> None:
    upward = sorted(dep for dep in GRAPH[name] if layer_of(dep) > layer_of(name))
    assert not upward, f'{name} (layer {layer_of(name)}) imports from above: {upward}'


def test_no_import_circles() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError('import circle: ' + ' -> '.join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


@pytest.mark.parametrize('name', sorted(n for n in MODULES if n.split('.')[1:2] and n.split('.')[1] in CORE))
def test_core_never_imports_ptychodus(name: str) -> None:
    """Statically, at every depth: no core module names Ptychodus (the subprocess test checks it at run time)."""
    hosts = sorted(dep for dep in imports_of(MODULES[name]) if dep == 'ptychodus' or dep.startswith('ptychodus.'))
    assert not hosts, f'{name} imports {hosts}'


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    """The two rules above would catch a regression: shown on the real graph with one edge added."""
    archive, patterns = f'{NAME}.npz.archive', f'{NAME}.npz.patterns'
    assert archive in GRAPH[patterns]  # the reader streams members the archive opens...
    assert patterns not in GRAPH[archive]  # ...and the archive does not know its reader (the old circle)
    assert layer_of(f'{NAME}.facts.geometry') < layer_of(f'{NAME}.host.plugin')
