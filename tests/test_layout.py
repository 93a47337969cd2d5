"""The package layout: dependencies point one way, with no import cycle (not even inside functions), no
module imports another's private names, and the argparse Namespace stays in the command-line layer."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A module may import only modules of its own layer or of lower layers; within a layer, no cycle.
LAYERS = [
    ('util', 'util.errors', 'util.io', 'util.distributed'),
    ('models',),
    ('util.data',),
    ('util.train', 'util.evaluation', 'util.pictures'),
    ('util.cli', 'util.synthetic', 'util.visualize', 'util.splits_summary'),
]


def layer(module):
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or (module.startswith(p + '.') and p != 'util') for p in prefixes):
            return rank
    raise AssertionError(f'{module}: in no layer of tests/test_layout.py')


def modules():
    for package in ('models', 'util'):
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith('.py'):
                    rel = os.path.relpath(os.path.join(dirpath, name), ROOT)[:-3].replace(os.sep, '.')
                    yield rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def project_imports(module):
    """(imported module, imported names) of every import statement anywhere in the module."""
    path = os.path.join(ROOT, *module.split('.'))
    path = os.path.join(path, '__init__.py') if os.path.isdir(path) else path + '.py'
    with open(path) as f:
        tree = ast.parse(f.read())
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(parts + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            submodules = [f'{base}.{n}' for n in names if is_module(f'{base}.{n}')]
            yield (base, tuple(n for n in names if not is_module(f'{base}.{n}')))
            for sub in submodules:
                yield sub, ()


def is_module(name):
    path = os.path.join(ROOT, *name.split('.'))
    return os.path.isdir(path) or os.path.isfile(path + '.py')


def ours(name):
    return name.split('.')[0] in ('models', 'util')


ALL = sorted(modules())


@pytest.mark.parametrize('module', ALL)
def test_imports_point_down_and_name_no_private_names(module):
    for target, names in project_imports(module):
        if not ours(target):
            continue
        assert layer(target) <= layer(module), f'{module} imports {target}, a higher layer'
        private = [n for n in names if n.startswith('_')]
        assert not private, f'{module} imports private names {private} of {target}'


def test_no_import_cycle():
    graph = {m: {t for t, _ in project_imports(m) if ours(t) and t in ALL and t != m} for m in ALL}
    state = {}

    def visit(m, path):
        state[m] = 'open'
        for t in graph[m]:
            if state.get(t) == 'open':
                cycle = path[path.index(t):] + [t]
                raise AssertionError('import cycle: ' + ' -> '.join(cycle))
            if t not in state:
                visit(t, path + [t])
        state[m] = 'done'

    for m in ALL:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize('module', [m for m in ALL if layer(m) < len(LAYERS) - 1])
def test_the_namespace_stays_in_the_command_line_layer(module):
    path = os.path.join(ROOT, *module.split('.'))
    path = os.path.join(path, '__init__.py') if os.path.isdir(path) else path + '.py'
    with open(path) as f:
        text = f.read()
    assert 'Namespace(' not in text and 'getattr(args' not in text and 'argparse' not in text, module
    tree = ast.parse(text)
    params = [a.arg for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              for a in node.args.args + node.args.kwonlyargs]
    assert 'args' not in params, f'{module}: a function takes args'


def test_tests_and_benchmarks_import_without_touching_sys_path():
    """The project is installed (pyproject.toml, setup_env.sh): nothing edits the module search path."""
    offenders = []
    for folder in ('tests', 'benchmarks'):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith('.py') and name != 'test_layout.py':
                with open(os.path.join(ROOT, folder, name)) as f:
                    if re.search(r'sys\.path\.(insert|append)\(', f.read()):
                        offenders.append(f'{folder}/{name}')
    assert offenders == []
