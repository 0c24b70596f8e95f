"""Every code and command example in README.md and docs/*.md runs, on the real files.

The pages are read as Markdown: each fenced block whose language is a shell or Python
(``console``, ``bash``, ``sh``, ``shell``, ``python``, ``py``) is an example. Each page runs
in its own empty folder (``tmp_path``) holding the real files of ``../shared/data``
(``PTYCHOPINN_SHARED_DATA``, see ``conftest.py``) under their own names, so a page's examples
use ``run1084_recon3_postPC.npz`` as a user uses a file in the current folder; a page's blocks
run in page order, so a later block may use what an earlier one wrote.

* ``console``: each ``$ `` line (with ``\\`` continuations) is a command run by bash; any lines
  after it up to the next ``$ `` are output the page shows, and each of them (``...`` stands
  for anything) must appear in what the command printed, in that order.
* ``bash`` / ``sh`` / ``shell``: the block is one script (``set -euo pipefail``).
* ``python``: the block is one program, run by this interpreter.

Every command must exit 0. A block that cannot run here says so right before its opening
fence: ``<!-- not-run: reason -->`` (it is counted and listed with its reason), or
``<!-- run-by: tests/test_x.py::test_name -->`` when another test runs it (the test must
exist). ``<!-- no-run: reason -->`` right after the closing fence is read as ``not-run``
(an older spelling some pages use). Nothing is skipped silently: a shell or Python block
with neither marker runs, and a fence with no language fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / 'README.md', *(ROOT / 'docs').glob('*.md')])
SHELL = {'console', 'bash', 'sh', 'shell'}
PYTHON = {'python', 'py'}
#: Fences that are not examples: data, layouts, text, and MyST directives (``{toctree}`` ...).
NOT_CODE = {'text', 'json', 'toml', 'ini', 'yaml', 'ascii'}
FENCE = re.compile(r'^(?P<fence>`{3,}|~{3,})\s*(?P<info>\S*)')
MARKER = re.compile(r'^<!--\s*(?P<kind>not-run|no-run|run-by):\s*(?P<reason>.*?)\s*-->\s*$')
TIMEOUT_S = 600


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: str = ''  # '', 'not-run' or 'run-by'
    reason: str = ''

    @property
    def where(self) -> str:
        return f'{shown(self.page)}:{self.line}'


def shown(page: Path) -> str:
    """``page`` relative to the repository when it is in it."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` that are shell or Python examples, with their markers."""
    lines = page.read_text(encoding='utf-8').splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening['fence'], opening['info']
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence[0] * len(fence)):
            end += 1
        if end == len(lines):
            raise AssertionError(f'{shown(page)}:{i + 1}: fence never closed')
        language = info.lower()
        if not language:
            raise AssertionError(f'{shown(page)}:{i + 1}: a fence without a language '
                                 '(say `text` for text, `console`/`bash`/`python` for an example)')
        if language.startswith('{') or language in NOT_CODE:
            i = end + 1
            continue
        if language not in SHELL | PYTHON:
            raise AssertionError(f'{shown(page)}:{i + 1}: fence language {language!r} '
                                 'is neither an example language nor known text')
        block = Block(page, i + 1, language, '\n'.join(lines[i + 1:end]) + '\n')
        before = MARKER.match(lines[i - 1].strip()) if i > 0 else None
        after = MARKER.match(lines[end + 1].strip()) if end + 1 < len(lines) else None
        if after and after['kind'] != 'no-run':
            after = None  # only the older spelling goes after the block
        marker = before or after
        if marker:
            block.marker = 'run-by' if marker['kind'] == 'run-by' else 'not-run'
            block.reason = marker['reason']
        found.append(block)
        i = end + 1
    return found


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for each ``$ `` line of a console block."""
    commands: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith('$ '):
            if line.strip() and not commands:
                raise AssertionError(f'console block: output before any command: {line!r}')
            if commands and line.strip():
                commands[-1][1].append(line.rstrip())
            i += 1
            continue
        command = line[2:]
        while command.endswith('\\') and i + 1 < len(lines):
            i += 1
            command = command[:-1].rstrip() + ' ' + lines[i].strip()
        commands.append((command, []))
        i += 1
    if not commands:
        raise AssertionError('console block without a `$ ` command')
    return commands


def environment() -> dict[str, str]:
    """Our interpreter's bin folder first on PATH, so the installed scripts are the ones run."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}',
            'PYTHONDONTWRITEBYTECODE': '1', 'QT_QPA_PLATFORM': 'offscreen', 'MPLBACKEND': 'Agg'}


def run(argv: list[str], cwd: Path, where: str) -> str:
    done = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, (
        f'{where}: exit status {done.returncode}\n--- ran:\n{argv[-1]}\n--- printed:\n{output[-4000:]}'
    )
    return output


def assert_shows(expected: list[str], output: str, where: str) -> None:
    """Each expected line (``...``: anything) is in some printed line, in the page's order."""
    printed = output.splitlines()
    position = 0
    for want in expected:
        if want.strip() == '...':
            continue
        for k in range(position, len(printed)):
            if want.strip() in printed[k]:
                position = k + 1
                break
        else:
            raise AssertionError(f'{where}: the page shows {want.strip()!r}, the command did not print it '
                                 f'(after line {position}):\n{output[-4000:]}')


def run_block(block: Block, cwd: Path) -> None:
    if block.language == 'console':
        for command, expected in console_commands(block.text):
            output = run(['bash', '-c', f'set -euo pipefail\n{command}'], cwd, block.where)
            assert_shows(expected, output, block.where)
    elif block.language in SHELL:
        run(['bash', '-c', f'set -euo pipefail\n{block.text}'], cwd, block.where)
    else:
        script = cwd / f'.example_{block.line}.py'
        script.write_text(block.text, encoding='utf-8')
        try:
            run([sys.executable, script.name], cwd, block.where)
        finally:
            script.unlink()


def page_folder(tmp_path: Path) -> Path:
    """An empty folder with the real files under their own names (read-only copies: small)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f'the real files are missing: {SHARED_DATA} (set PTYCHOPINN_SHARED_DATA)')
    for source in SHARED_DATA.iterdir():
        if source.is_file():
            shutil.copyfile(source, tmp_path / source.name)
    return tmp_path


ALL = {page: blocks_of(page) for page in PAGES}
WITH_EXAMPLES = [page for page, blocks in ALL.items() if any(not b.marker for b in blocks)]


@pytest.mark.parametrize('page', WITH_EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in WITH_EXAMPLES])
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    cwd = page_folder(tmp_path)
    ran = 0
    for block in ALL[page]:
        if not block.marker:
            run_block(block, cwd)
            ran += 1
    assert ran > 0


def test_every_example_is_run_or_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    """The count: examples run here, run by another test, and not run (with the reasons)."""
    blocks = [b for page in PAGES for b in ALL[page]]
    ran = [b for b in blocks if not b.marker]
    elsewhere = [b for b in blocks if b.marker == 'run-by']
    not_run = [b for b in blocks if b.marker == 'not-run']
    for block in not_run:
        assert len(block.reason) > 10, f'{block.where}: not-run needs a reason'
    for block in elsewhere:
        test_file, _, name = block.reason.partition('::')
        path = ROOT / test_file
        assert path.is_file(), f'{block.where}: run-by names {test_file}, which does not exist'
        assert re.search(rf'^def {re.escape(name)}\b', path.read_text(encoding='utf-8'), re.M), (
            f'{block.where}: run-by names {name}, which is not a test in {test_file}')
    assert ran, 'no example found at all'
    assert 'README.md' in {b.page.name for b in ran}
    with capsys.disabled():
        print(f'\ndocs examples: {len(ran)} run here, {len(elsewhere)} run by other tests, '
              f'{len(not_run)} not run')
        for block in elsewhere:
            print(f'  run-by  {block.where}: {block.reason}')
        for block in not_run:
            print(f'  not-run {block.where}: {block.reason}')


def test_readme_shows_no_command_that_is_not_run() -> None:
    """The README (the landing page) shows only commands that were run, or says why not."""
    readme = ALL[ROOT / 'README.md']
    for block in readme:
        assert block.marker != 'not-run' or block.reason, block.where


def test_links_and_images_the_pages_show_exist() -> None:
    """Every relative link and image of a page (screenshots included) is a file in the repository."""
    checked = 0
    for page in PAGES:
        text = page.read_text(encoding='utf-8')
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if '://' in target or target.startswith(('#', 'mailto:')):
                continue
            path = target.split('#', 1)[0]
            assert (page.parent / path).exists(), f'{page.relative_to(ROOT)}: link {target} leads nowhere'
            checked += 1
    assert checked > 20, checked  # the README alone links a dozen pages


def test_flags_the_cli_page_explains_are_the_parsers_flags() -> None:
    """docs/cli.md's table explains flags by hand; each one must be a flag the parser has."""
    from ptychopinn_ptychodus.cli.convert import build_parser

    parser = build_parser()
    known = {option for action in parser._actions for option in action.option_strings}
    text = (ROOT / 'docs' / 'cli.md').read_text(encoding='utf-8')
    table = [line for line in text.splitlines() if line.startswith('| `--')]
    explained = {flag for line in table for flag in re.findall(r'`(--[A-Za-z0-9-]+)', line.split('|')[1])}
    assert len(explained) > 20, explained
    assert not explained - known, f'docs/cli.md explains flags the parser does not have: {explained - known}'


def test_the_marker_parser_reads_what_it_claims(tmp_path: Path) -> None:
    """The parser itself: a marker before, the old spelling after, console output lines."""
    page = tmp_path / 'p.md'
    page.write_text(
        '<!-- not-run: it starts a window -->\n```bash\nptychodus\n```\n\n'
        '```console\n$ echo a \\\n  b\na b\n$ true\n```\n<!-- no-run: an old marker -->\n\n'
        '```{toctree}\nx\n```\n```python\nprint(1)\n```\n',
        encoding='utf-8',
    )
    blocks = blocks_of(page)
    assert [(b.language, b.marker) for b in blocks] == [('bash', 'not-run'), ('console', 'not-run'),
                                                       ('python', '')]
    assert blocks[0].reason == 'it starts a window'
    assert console_commands(blocks[1].text) == [('echo a b', ['a b']), ('true', [])]
    with pytest.raises(AssertionError, match='did not print'):
        assert_shows(['c'], 'a b\n', 'here')
