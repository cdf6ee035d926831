"""The package's layering, read from its imports (docs/architecture.md).

Data flows one way: data -> recommenders -> sae -> sweep -> analysis, with
the launchers (monosem_jax/experiments/) on top: they may import everything,
and nothing else in the package imports them, nor the repository's
experiments/ (shims and benchmarks, not installed). The SAE package never
imports the
recommenders (the scorer reaches it as an argument), training never imports
analysis, the sweep package is itself layered, there are no import cycles
and no imports of the package inside functions, neither in the package nor
in the repository's experiments/. Every declared dependency is imported
somewhere. The analysis reads finished work and imports no orchestrator
(the runs that write it). The recommender kinds are named in one registry
(monosem_jax/recommenders/kinds.py): no module of the package outside
recommenders/ names a kind, and no code of the package or the launchers
branches on a kind's name.
"""

import ast
import pathlib
import re
import tomllib

from monosem_jax.recommenders import kinds

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'monosem_jax'
EXPERIMENTS = ROOT / 'experiments'

#: Rank of each top-level part; a module may import parts of lower or equal rank.
LAYERS = {'errors': 0, 'files': 0, 'progress': 0, 'compilation': 0,
          'precision': 0, 'data': 1,
          'recommenders': 2, 'sae': 3, 'sweep': 4, 'analysis': 5,
          'experiments': 6}
#: The launchers and their configs, the top layer (may import everything).
LAUNCHERS = PACKAGE / 'experiments'
#: Order inside the sweep package.
SWEEP = ['spec', 'state', 'batches', 'step', 'memory', 'sharding', 'metrics',
         'checkpoint', 'workdir', 'driver', 'runner']
#: The runs that write workdirs (training, import, the sweep): the analysis
#: reads their folders through recommenders.artifact and sweep.workdir.
ORCHESTRATORS = ('monosem_jax.recommenders.train',
                 'monosem_jax.recommenders.imported',
                 'monosem_jax.sweep.driver', 'monosem_jax.sweep.runner')


def _module_name(path: pathlib.Path) -> str:
  rel = path.relative_to(ROOT).with_suffix('')
  parts = list(rel.parts)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _imports(path: pathlib.Path):
  """(imported module, inside a function?) for every import in a file."""
  tree = ast.parse(path.read_text())
  in_function = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for sub in ast.walk(node):
        in_function.add(id(sub))
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(a.name, id(node) in in_function) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from pkg import mod` imports pkg.mod when it is a module.
      for a in node.names:
        sub = f'{node.module}.{a.name}'
        is_module = (ROOT / (sub.replace('.', '/') + '.py')).exists() or (
            ROOT / sub.replace('.', '/')).is_dir()
        out.append((sub if is_module else node.module, id(node) in in_function))
  return out


def _graph():
  graph = {}
  for path in PACKAGE.rglob('*.py'):
    name = _module_name(path)
    graph[name] = {m for m, _ in _imports(path)
                   if m.startswith('monosem_jax.') and m != name}
  return graph


def _part(module: str) -> str:
  return module.split('.')[1] if module.count('.') else ''


def test_no_import_cycles():
  graph = _graph()
  state = {}

  def visit(node, stack):
    state[node] = 'open'
    for dep in sorted(graph.get(node, ())):
      if dep not in graph:
        continue
      if state.get(dep) == 'open':
        raise AssertionError('import cycle: ' + ' -> '.join(
            stack[stack.index(dep):] + [dep]))
      if dep not in state:
        visit(dep, stack + [dep])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])


def test_layers_point_one_way():
  bad = []
  for module, deps in _graph().items():
    if module == 'monosem_jax':
      continue
    for dep in deps:
      src, dst = _part(module), _part(dep)
      if src in LAYERS and dst in LAYERS and LAYERS[dst] > LAYERS[src]:
        bad.append(f'{module} imports {dep}')
      if src == 'sae' and dst == 'recommenders':
        bad.append(f'{module} imports {dep} (the scorer is an argument)')
      if src == 'sweep' and dst == 'sweep':
        a = module.split('.')[-1]
        b = dep.split('.')[-1]
        if a in SWEEP and b in SWEEP and SWEEP.index(b) > SWEEP.index(a):
          bad.append(f'{module} imports {dep} (sweep order: {SWEEP})')
  assert not bad, '\n'.join(sorted(bad))


def test_only_the_launchers_import_the_launchers():
  """``monosem_jax.experiments`` is the top layer: no other module of the
  package (its ``__init__`` included) imports it, and none imports the
  repository's ``experiments`` (not installed: a wheel would break)."""
  bad = []
  for path in PACKAGE.rglob('*.py'):
    inside = path.is_relative_to(LAUNCHERS)
    for m, _ in _imports(path):
      if m.split('.')[0] == 'experiments':
        bad.append(f'{path.relative_to(ROOT)} imports {m} (the '
                   'repository\'s experiments/ is not installed)')
      elif not inside and (m == 'monosem_jax.experiments'
                           or m.startswith('monosem_jax.experiments.')):
        bad.append(f'{path.relative_to(ROOT)} imports {m} (the launchers '
                   'are the top layer)')
  assert not bad, '\n'.join(sorted(bad))


def test_analysis_imports_no_orchestrator():
  bad = [f'{module} imports {dep}' for module, deps in _graph().items()
         if _part(module) == 'analysis' for dep in deps
         if dep in ORCHESTRATORS]
  assert not bad, '\n'.join(sorted(bad))


def test_no_package_imports_inside_functions():
  bad = [f'{path.relative_to(ROOT)} imports {m} inside a function'
         for path in PACKAGE.rglob('*.py')
         for m, inside in _imports(path) if inside and m.startswith('monosem_jax')]
  assert not bad, '\n'.join(bad)


#: Function-level imports of the project allowed in the launchers
#: (monosem_jax/experiments/) and the repository's experiments/, each with
#: its reason: (file, imported module) -> why. Empty: a launcher's ``--help``
#: already imports jax and the analysis through launch.py, so a
#: lazy import saves a fraction of a second there and hides the launcher's
#: dependencies; a cycle it would dodge is a bug to fix by moving code down.
LAZY_IMPORTS_IN_EXPERIMENTS: dict[tuple[str, str], str] = {}


def test_no_project_imports_inside_functions_of_experiments():
  # Issue 18: the launchers and their configs import the project at the top
  # of the file, as the package does.
  found = {(str(path.relative_to(ROOT)), m)
           for path in list(EXPERIMENTS.rglob('*.py')) + list(
               LAUNCHERS.rglob('*.py'))
           for m, inside in _imports(path)
           if inside and m.split('.')[0] in ('monosem_jax', 'experiments')}
  bad = sorted(found - set(LAZY_IMPORTS_IN_EXPERIMENTS))
  assert not bad, '\n'.join(f'{f} imports {m} inside a function'
                            for f, m in bad)
  stale = sorted(set(LAZY_IMPORTS_IN_EXPERIMENTS) - found)
  assert not stale, f'listed but no longer imported lazily: {stale}'


def test_unknown_keys_are_refused_by_one_helper():
  # Issue 18: "unknown key(s) ...; known: ..." is built by
  # errors.refuse_unknown alone, so every mapping check reads the same.
  pattern = re.compile(r'unknown (key|option)\(s\)')
  bad = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob('*.py')
         if path.name != 'errors.py' and pattern.search(path.read_text())]
  assert not bad, f'an unknown-keys message built outside errors.py: {bad}'


def test_a_run_locks_its_workdir_through_one_helper():
  # Issue 18: prepare, lock and report a taken-over lock once
  # (files.locked_workdir), not in each stage.
  bad = [str(path.relative_to(ROOT))
         for path in list(PACKAGE.rglob('*.py')) + list(
             (ROOT / 'experiments').rglob('*.py'))
         if path.name != 'files.py' and '.stale_pid' in path.read_text()]
  assert not bad, f'lock boilerplate outside files.locked_workdir: {bad}'


def test_the_sae_package_docstring_names_each_module():
  # Issue 18: the package docstring had gone stale (two of four modules).
  doc = ast.get_docstring(ast.parse((PACKAGE / 'sae' / '__init__.py')
                                    .read_text()))
  modules = {p.stem for p in (PACKAGE / 'sae').glob('*.py')} - {'__init__'}
  missing = sorted(m for m in modules if f'``{m}``' not in doc)
  assert not missing, f'sae/__init__.py does not describe {missing}'


def _python_files():
  return list(PACKAGE.rglob('*.py')) + list(EXPERIMENTS.rglob('*.py'))


def _kind_names(node) -> list[str]:
  """The kind names a node is, or holds as a tuple / list / set literal."""
  items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [
      node]
  return [n.value for n in items
          if isinstance(n, ast.Constant) and n.value in kinds.NAMES]


def test_kind_names_appear_only_in_recommenders():
  """Outside recommenders/ the package names no kind, in code nor in
  docstrings (``'mf'`` / ``"ncf"`` quoted): it asks the registry, or takes
  the kind from a spec, an artifact or a config."""
  quoted = re.compile('|'.join(f"'{n}'|\"{n}\"" for n in kinds.NAMES))
  bad = []
  for path in PACKAGE.rglob('*.py'):
    if path.is_relative_to(PACKAGE / 'recommenders'):
      continue
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if quoted.search(line):
        bad.append(f'{path.relative_to(ROOT)}:{i} names a kind: '
                   f'{line.strip()}')
  assert not bad, '\n'.join(bad)


def test_no_code_branches_on_a_kind_name():
  """No ``kind == 'mf'``, ``model in ('mf', 'ncf')`` or ``case 'ncf':`` in
  the package or the launchers: the kind is chosen once, by the registry
  (monosem_jax/recommenders/kinds.py), and the rest calls its interface."""
  bad = []
  for path in _python_files():
    for node in ast.walk(ast.parse(path.read_text())):
      names = []
      if isinstance(node, ast.Compare):
        names = [n for x in [node.left, *node.comparators]
                 for n in _kind_names(x)]
      elif isinstance(node, ast.MatchValue):
        names = _kind_names(node.value)
      if names:
        bad.append(f'{path.relative_to(ROOT)}:{node.lineno} compares with '
                   f'the kind name(s) {names}')
  assert not bad, '\n'.join(bad)


def test_every_sweep_module_is_placed_in_the_order():
  modules = {p.stem for p in (PACKAGE / 'sweep').glob('*.py')} - {'__init__'}
  assert modules == set(SWEEP)


def test_every_declared_dependency_is_imported():
  meta = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  import_names = {'orbax-checkpoint': 'orbax', 'ml-collections':
                  'ml_collections', 'absl-py': 'absl'}
  used = set()
  for path in list(PACKAGE.rglob('*.py')) + list((ROOT / 'experiments').rglob(
      '*.py')):
    used |= {m.split('.')[0] for m, _ in _imports(path)}
  for dep in meta['dependencies']:
    name = re.split(r'[<>=!~ \[]', dep, maxsplit=1)[0]
    top = import_names.get(name, name.replace('-', '_'))
    assert top in used, f'{name} is declared in pyproject.toml but never imported'


def test_at_most_two_functions_run_an_epoch():
  # Issue 18: one epoch runner. The block program (step.run_epoch and its
  # unjitted body) is dispatched by the sweep's Placement; no second path
  # per placement (names bound to jitted functions count too).
  names = []
  for path in PACKAGE.rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        found = [node.name]
      elif isinstance(node, ast.Assign):
        found = [t.id for t in node.targets if isinstance(t, ast.Name)]
      else:
        continue
      names += [f'{path.relative_to(ROOT)}: {n}' for n in found
                if 'run_epoch' in n]
  assert len(names) <= 2, '\n'.join(sorted(names))


def test_no_launcher_parses_log_text():
  """Issue 18: log text is no API. The launchers' regular expressions read
  command lines (launch.py) only; progress, budgets and counts come from
  typed hooks and records (device_check: the analysis's ``on_progress``
  hook, the tests stage's pytest plugin), never from a run's output."""
  roots = [EXPERIMENTS, PACKAGE / 'experiments']
  users = sorted(_module_name(p) for root in roots if root.is_dir()
                 for p in root.rglob('*.py')
                 if any(m == 're' for m, _ in _imports(p)))
  assert all(u.endswith('.launch') for u in users), users
