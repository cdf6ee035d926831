"""What every absl launcher shares: flag parsing and one-line refusals.

``app.run(main, flags_parser=parse_flags)`` with the config flag from
:func:`define_config_file` turns a bad command line into one ``error: ...``
line (exit status 1) where absl and ml_collections would print a traceback:

* an override of a config field that does not exist
  (``--config.grid.sead=...``): the field and the valid ones;
* a config field given twice (``--config.grid.rho='(0.1,)'
  --config.grid.rho='(0.2,)'``, which ml_collections would concatenate
  into ``(0.1, 0.2)``): refused, give a tuple as one value;
* a missing required flag (``--workdir``): the flag and its help;
* any other value absl cannot parse (``--config.k=abc``): its message.

Dict and tuple fields take Python literals in which ``dict(key=value)`` may
stand for ``{'key': value}``, as in the config files:
``--config.concept_sets="{'metal (any)': ('metal', 'heavy_metal')}"``,
``--config.use_cases="(dict(kind='suppress', concept='Horror'),)"``
(:func:`python_literal`; ml_collections alone refuses dict fields and reads
a ``dict(...)`` inside a tuple as one string).

:func:`refusals_in_one_line` wraps ``main`` so that a deliberate refusal of
the library (:class:`~monosem_jax.errors.MonosemError`: bad data, an invalid
config, a busy or foreign workdir) prints as ``error: <message>`` with exit
status 1, without a traceback.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import os
import re
import sys

from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags import tuple_parser

from monosem_jax.analysis import concepts
from monosem_jax.errors import ConfigError, MonosemError


def _config_of(argv: list[str], name: str):
  """The config ``--name`` builds: from ``--name=FILE[:ARG]`` in ``argv``,
  else the flag's default (None if neither can be had)."""
  for arg in argv[1:]:
    if arg.startswith(f'--{name}='):
      return _load_config(arg.split('=', 1)[1])
  default = flags.FLAGS[name].default if name in flags.FLAGS else None
  return default if hasattr(default, 'keys') else None


def _load_config(config_arg: str):
  """The config a ``FILE[:ARG]`` flag value builds, or None."""
  path, _, arg = config_arg.partition(':')
  try:
    spec = importlib.util.spec_from_file_location('_launch_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
  except Exception:  # pylint: disable=broad-except
    return None


def _unknown_field(config, path: list[str]) -> tuple[int, list[str]] | None:
  """Index of the first component of ``path`` that ``config`` lacks, and
  the keys available there; None if the whole path exists."""
  node = config
  for i, key in enumerate(path):
    keys = list(node.keys()) if hasattr(node, 'keys') else []
    if key not in keys:
      return i, sorted(keys)
    node = node[key]
  return None


def _exit_if_unknown_field(argv: list[str], config_of) -> None:
  """Exits with one line if an override in ``argv`` names a missing field.

  ``config_of(flag_name)`` gives the config that flag holds (or None).
  """
  for arg in argv[1:]:
    m = re.match(r'--(\w+)\.([\w.]+)(=.*)?$', arg)
    if not m:
      continue
    name, path = m.group(1), m.group(2).split('.')
    config = config_of(name)
    found = _unknown_field(config, path) if config is not None else None
    if found is None:
      continue
    i, known = found
    where = '.'.join([name] + path[:i + 1])
    close = difflib.get_close_matches(path[i], known, n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
    sys.exit(f'error: {arg.split("=", 1)[0]}: {where} is not a config '
             f'field{hint}; valid here: {", ".join(known)}')


class _DictCalls(ast.NodeTransformer):
  """``dict(a=1)`` -> ``{'a': 1}`` (keywords only), so that
  ``ast.literal_eval`` takes it."""

  def visit_Call(self, node):  # pylint: disable=invalid-name
    self.generic_visit(node)
    if (isinstance(node.func, ast.Name) and node.func.id == 'dict'
        and not node.args and all(k.arg for k in node.keywords)):
      return ast.Dict(keys=[ast.Constant(k.arg) for k in node.keywords],
                      values=[k.value for k in node.keywords])
    return node


def python_literal(text: str):
  """The value of ``text``, a Python literal in which ``dict(key=value)``
  may stand for ``{'key': value}``; nothing is executed.

  >>> python_literal("(dict(kind='suppress', levels=(None, 1.0)),)")
  ({'kind': 'suppress', 'levels': (None, 1.0)},)

  Raises:
    ValueError, SyntaxError: not such a literal.
  """
  tree = ast.parse(text.strip(), mode='eval')
  return ast.literal_eval(_DictCalls().visit(tree).body)


_DICT_SYNTAX = """{'name': ('tag', 'tag2')} or dict(name=('tag', 'tag2'))"""


class _TupleParser(tuple_parser.TupleParser):
  """ml_collections' tuple parser, also taking ``dict(...)`` elements (one
  dict alone is a tuple of one dict)."""

  def parse(self, argument):
    if isinstance(argument, str):
      try:
        value = python_literal(argument)
      except (SyntaxError, ValueError):
        return super().parse(argument)   # e.g. a bare string: its own rules
      if isinstance(value, dict):
        return (value,)
      if isinstance(value, tuple):
        return value
    return super().parse(argument)


class _DictParser(flags.ArgumentParser):
  """Dict config fields (ml_collections has no parser for them)."""

  def parse(self, argument):
    if isinstance(argument, dict):
      return argument
    try:
      value = python_literal(argument)
    except (SyntaxError, ValueError):
      value = None
    if not isinstance(value, dict):
      raise ValueError(f'expected a dict as a Python literal, e.g. '
                       f'{_DICT_SYNTAX}')
    return value

  def flag_type(self):
    return 'dict'


config_flags.register_flag_parser_for_type(tuple, _TupleParser())
config_flags.register_flag_parser_for_type(dict, _DictParser())


def _exit_if_repeated(argv: list[str]) -> None:
  """Exits with one line if a config field is given twice in ``argv``."""
  seen = set()
  for arg in argv[1:]:
    if arg == '--':
      break
    m = re.match(r'--?(\w+(?:\.\w+)+)(=|$)', arg)
    if not m:
      continue
    if m.group(1) in seen:
      sys.exit(f'error: --{m.group(1)} is given twice; give each config field '
               'once (several values as one tuple, e.g. '
               f"--{m.group(1)}='(0.1, 0.2)')")
    seen.add(m.group(1))


def _flag_error_line(e: flags.Error) -> str:
  """One line for an absl flag error; a missing required flag is named with
  its help."""
  parts = []
  for line in str(e).splitlines():
    m = re.search(r'Flag --(\w+) must have a value other than None', line)
    if m and m.group(1) in flags.FLAGS:
      parts.append(f'--{m.group(1)} is required: '
                   f"{flags.FLAGS[m.group(1)].help.rstrip('.')}")
    elif line.strip():
      parts.append(line.strip())
  return 'error: ' + '; '.join(parts)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; a bad command line exits with one line (module
  docstring)."""
  _exit_if_repeated(argv)
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError):
    _exit_if_unknown_field(argv, lambda name: _config_of(argv, name))
    raise
  except flags.Error as e:
    sys.exit(_flag_error_line(e))


#: The repository root (``experiments/`` lives in it): default config files
#: are found from any working directory.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_config_file(name: str, default: str | None, help_string: str):
  """``config_flags.DEFINE_config_file`` (unlocked).

  A relative ``default`` is taken from the repository root when it is not
  in the working directory, so ``python -m experiments.run`` works from any
  folder. With a default file, ml_collections applies the command line's
  overrides while the flag is defined, before :func:`parse_flags` runs; an
  unknown field there exits with the same one line.
  """
  if default and not os.path.isabs(default) and not os.path.exists(default):
    default = os.path.join(ROOT, default)
  if default:
    _exit_if_repeated(sys.argv)
  try:
    return config_flags.DEFINE_config_file(name, default, help_string,
                                           lock_config=False)
  except (AttributeError, KeyError):
    _exit_if_unknown_field(
        sys.argv, lambda n: _load_config(default) if n == name and default
        else None)
    raise
  except flags.Error as e:
    sys.exit(_flag_error_line(e))


def refusals_in_one_line(main):
  """Decorates an absl ``main``: MonosemError -> ``error: ...``, status 1."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except MonosemError as e:
      sys.exit(f'error: {e}')

  return wrapped



def refuse_without_concepts(dataset) -> None:
  """The analysis matches neurons to item concepts: the launchers that run
  it refuse, before any work, a dataset that has none
  (:func:`monosem_jax.analysis.concepts.require_concepts`)."""
  concepts.require_concepts(dataset)
