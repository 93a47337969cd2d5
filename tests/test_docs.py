"""The documentation is checked like code: README.md, CHANGELOG.md and docs/*.md.

- every relative link and image ([text](path), ![alt](path)) resolves to a file or directory (anchors ignored);
- every `python X.py ...`, `python -m pkg.mod ...` and `torchrun ... X.py ...` line of a shell code block, and
  every such inline command in the prose, names an existing script and only flags that script's parser
  accepts (argparse's unambiguous prefixes included);
- every `bash X.sh` / `sh X.sh` names an existing script;
- the README stays short, and the documents never cite a document that is not in the repository.
"""
import argparse
import inspect
import os
import re
import runpy
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / 'README.md', ROOT / 'CHANGELOG.md', *sorted((ROOT / 'docs').glob('*.md'))]
README_MAX_LINES = 200

# Pages and scripts being added on another branch: links and commands naming them are accepted while they are
# absent (a present path is always checked as usual). Empty on the main branch.
PENDING = set()

# The scripts whose flags are defined by util.cli.options.build_parser(name).
OPTION_SCRIPTS = {'train_baseline.py': 'baseline', 'train_NL.py': 'NL', 'evaluate.py': 'evaluate',
                  'extract_features.py': 'extract', 'search.py': 'search', 'export_onnx.py': 'export'}
SHELL_LANGUAGES = {'', 'bash', 'sh', 'shell', 'console'}
OUR_PACKAGES = {'util', 'models', 'tests', 'benchmarks'}

FENCE = re.compile(r'^```([\w+-]*)[^\n]*\n(.*?)^```\s*$', re.M | re.S)
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
INLINE_CODE = re.compile(r'`[^`\n]*`')
ASSIGNMENT = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)=(.*)$', re.S)
SEPARATORS = {'&&', '||', ';', '|', '&'}


def code_blocks(text):
    """(language, body) of every fenced code block."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


def relative_links(text):
    """Link targets outside code (fenced blocks and inline code removed), without URLs and pure anchors."""
    prose = INLINE_CODE.sub('', FENCE.sub('', text))
    targets = []
    for target in LINK.findall(prose):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I) or target.startswith('#'):
            continue
        targets.append(target.split('#')[0])
    return targets


def relative(path):
    """A path relative to the repository root, as PENDING names it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def link_problems(doc, text):
    problems = []
    for target in relative_links(text):
        path = Path(os.path.normpath(doc.parent / target if not target.startswith('/') else ROOT / target[1:]))
        if not path.exists() and relative(path) not in PENDING:
            problems.append(f'{relative(doc)}: link to {target} does not resolve')
    return problems


# ---- commands ------------------------------------------------------------------------------------------

def shell_lines(body):
    """Logical lines of a shell block: backslash continuations joined, console prompts removed."""
    joined = re.sub(r'\\\n', ' ', body)
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith('$ '):
            line = line[2:]
        if line:
            lines.append(line)
    return lines


def split_commands(tokens):
    """Split a token list at &&, ||, ;, | and &."""
    commands, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def expand(tokens, variables):
    """Replace $VAR / ${VAR} tokens defined earlier in the block by their words; drop unknown ones."""
    words = []
    for token in tokens:
        m = re.fullmatch(r'\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?', token)
        if m:
            words += shlex.split(variables.get(m.group(1), ''))
        elif not token.startswith('$'):
            words.append(token)
    return words


def parse_command(tokens):
    """(kind, target, args) of a command line: kind 'script', 'module' or 'shell'; None for other commands."""
    while tokens and ASSIGNMENT.match(tokens[0]):           # environment prefix: DATA_DIR=... bash run_X.sh
        tokens = tokens[1:]
    if not tokens:
        return None
    word, rest = Path(tokens[0]).name, tokens[1:]
    if word in ('bash', 'sh'):
        rest = [t for t in rest if not (t.startswith('-') and not t.endswith('.sh'))]
        return ('shell', rest[0], rest[1:]) if rest else None
    if word == 'torchrun':
        for i, token in enumerate(rest):
            if token == '-m' and i + 1 < len(rest):
                return 'module', rest[i + 1], rest[i + 2:]
            if token.endswith('.py'):
                return 'script', token, rest[i + 1:]
        return None
    if re.fullmatch(r'python(3(\.\d+)?)?', word):
        while rest and rest[0].startswith('-') and rest[0] not in ('-m', '-c'):
            rest = rest[1:]                                  # interpreter options such as -u
        if not rest or rest[0] == '-c':
            return None
        if rest[0] == '-m':
            return ('module', rest[1], rest[2:]) if len(rest) > 1 else None
        return 'script', rest[0], rest[1:]
    return None


INLINE_COMMAND = re.compile(r'`((?:python3?|bash|sh|torchrun) [^`\n]+)`')


def shell_texts(text):
    """The shell code blocks of a document, then its inline commands (`python X.py --flag` in prose)."""
    blocks = [body for language, body in code_blocks(text) if language in SHELL_LANGUAGES]
    return blocks + INLINE_COMMAND.findall(FENCE.sub('', text))


def commands_of(text):
    """Every (kind, target, args, line) in the shell code blocks and inline commands of a document."""
    found = []
    for body in shell_texts(text):
        variables = {}
        for line in shell_lines(body):
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:
                found.append(('unparsable', line, [], line))
                continue
            for command in split_commands(tokens):
                if all(ASSIGNMENT.match(t) for t in command):     # MODEL="--load_ckpt ..." kept for $MODEL
                    variables.update(ASSIGNMENT.match(t).groups() for t in command)
                    continue
                parsed = parse_command(expand(command, variables))
                if parsed is not None:
                    found.append((*parsed, line))
    return found


def module_path(module):
    """The file `python -m module` runs, or None for a module outside the repository."""
    if module.split('.')[0] not in OUR_PACKAGES:
        return None
    base = ROOT.joinpath(*module.split('.'))
    return base / '__main__.py' if base.is_dir() else base.with_suffix('.py')


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def _capture(parser, *args, **kwargs):
    raise _Captured(parser)


@lru_cache(maxsize=None)
def parser_of(relpath):
    """The argparse parser of a script or module file (None when it has none to find)."""
    if relpath in OPTION_SCRIPTS:
        from util.cli.options import build_parser
        return build_parser(OPTION_SCRIPTS[relpath])
    namespace = runpy.run_path(str(ROOT / relpath), run_name='docs_check')   # not '__main__': nothing runs
    own = namespace.get('build_parser')
    if callable(own) and getattr(own, '__module__', None) == 'docs_check':   # defined there, not imported
        return own()
    main = namespace.get('main')
    if not callable(main):
        return None
    # main() builds its parser and parses: stop it there and keep the parser.
    with mock.patch.object(argparse.ArgumentParser, 'parse_args', _capture), \
            mock.patch.object(argparse.ArgumentParser, 'parse_known_args', _capture):
        try:
            main([]) if inspect.signature(main).parameters else main()
        except _Captured as captured:
            return captured.parser
    return None


@lru_cache(maxsize=None)
def help_flags(relpath):
    """Fallback for a script whose parser cannot be reached: the --flags its --help prints."""
    out = subprocess.run([sys.executable, str(ROOT / relpath), '--help'], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    return frozenset(re.findall(r'(?<![\w-])(--[A-Za-z][\w-]*)', out.stdout))


def options_of(parser, args):
    """Long option strings accepted by the parser, following a sub-command named in args."""
    flags = {s for action in parser._actions for s in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = next((a for a in args if a in action.choices), None)
            if chosen is not None:
                return flags | options_of(action.choices[chosen], args)
    return flags


def accepted(flag, flags, allow_abbrev=True):
    if flag in flags or flag in ('-h', '--help'):
        return True
    matches = [f for f in flags if f.startswith(flag)]
    return allow_abbrev and len(matches) == 1


def command_problems(doc, text):
    problems = []
    where = relative(doc)
    for kind, target, args, line in commands_of(text):
        if kind == 'unparsable':
            problems.append(f'{where}: cannot parse the shell line {line!r}')
            continue
        if kind == 'module':
            path = module_path(target)
            if path is None:
                continue
        else:
            path = ROOT / target
        rel = relative(path)
        if not path.exists():
            if rel not in PENDING:
                problems.append(f'{where}: {rel} does not exist (in {line!r})')
            continue
        if kind == 'shell':
            continue
        flags = [t.strip('[]').split('=')[0] for t in args if t.strip('[]').startswith('-')]
        flags = [f for f in flags if f.startswith('--') or re.fullmatch(r'-[A-Za-z]', f)]
        if not flags:
            continue
        parser = parser_of(rel)
        if parser is not None:
            known, abbrev = options_of(parser, [t.strip('[]') for t in args]), parser.allow_abbrev
        else:
            known, abbrev = help_flags(rel), True
        for flag in flags:
            if not accepted(flag, known, abbrev):
                problems.append(f'{where}: {rel} does not accept {flag} (in {line!r})')
    return problems


# ---- the tests -----------------------------------------------------------------------------------------

def test_the_documents_exist():
    names = {relative(d) for d in DOCUMENTS}
    assert {'README.md', 'docs/datasets.md', 'docs/training.md', 'docs/evaluation.md', 'docs/models.md',
            'docs/tools.md', 'docs/pictures.md', 'docs/benchmarks.md', 'docs/development.md'} <= names


def test_readme_is_short():
    lines = (ROOT / 'README.md').read_text(encoding='utf-8').count('\n')
    assert lines <= README_MAX_LINES, f'README.md has {lines} lines; at most {README_MAX_LINES}'


@pytest.mark.parametrize('doc', DOCUMENTS, ids=relative)
def test_relative_links_resolve(doc):
    assert link_problems(doc, doc.read_text(encoding='utf-8')) == []


@pytest.mark.parametrize('doc', DOCUMENTS, ids=relative)
def test_commands_name_existing_scripts_and_flags(doc):
    assert command_problems(doc, doc.read_text(encoding='utf-8')) == []


def test_no_citation_of_a_missing_document():
    files = [*DOCUMENTS, ROOT / 'CITATION.cff', ROOT / 'benchmarks' / 'README.md']
    word = 'SP' + 'EC'                      # spelt in two parts so that this file does not contain it
    offenders = [relative(f) for f in files if f.exists() and word in f.read_text(encoding='utf-8')]
    assert offenders == []


# ---- the checker itself, on hand-written documents ----------------------------------------------------

def test_checker_finds_a_bad_flag_a_missing_script_and_a_broken_link(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], 'PENDING', {'docs/pending.md', 'pending_script.py'})
    doc = ROOT / 'docs' / 'example.md'
    text = '\n'.join([
        'See [readme](../README.md), [pending](pending.md), [gone](nowhere.md#part) and [web](https://x.org).',
        '```bash',
        'MODEL="--model_type resnet50_NL --non_layer 0 2 3 0"',
        'python evaluate.py --test_txt <dir>/test_path.txt \\',
        '    --rerank_k9 3 $MODEL    # a comment --not_a_flag',
        'DATA_DIR=x bash run_nowhere.sh --device cuda && python -m util.splits_summary r.json --csv s.csv',
        'torchrun --nproc_per_node=2 train_NL.py --stripe 16 16 16 16 --lr 1e-4',
        'python missing_script.py --x',
        'python pending_script.py --anything',
        'python -m pytest -q',
        '```',
    ])
    assert link_problems(doc, text) == ['docs/example.md: link to nowhere.md does not resolve']
    problems = command_problems(doc, text)
    assert [p.split(' (in ')[0] for p in problems] == [
        'docs/example.md: evaluate.py does not accept --rerank_k9',
        'docs/example.md: run_nowhere.sh does not exist',
        'docs/example.md: missing_script.py does not exist',
    ]


def test_checker_follows_sub_commands_and_captured_parsers():
    doc = ROOT / 'docs' / 'example.md'
    good = '```\npython -m util.visualize curves --metrics m.csv\npython fig/make_figures.py --out_dir x\n```\n'
    bad = '```\npython -m util.visualize curves --load_ckpt c.pth\n```\n'
    assert command_problems(doc, good) == []
    assert [p.split(' (in ')[0] for p in command_problems(doc, bad)] == [
        'docs/example.md: util/visualize.py does not accept --load_ckpt']
