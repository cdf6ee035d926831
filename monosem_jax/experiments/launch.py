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

A config file is found from any working directory
(:func:`resolve_config_path`): a path that exists wins, then a bare name of
a shipped config (``--config=recommender.py:ml-1m,mf``), then a path
naming the shipped configs' folder, as the package
(``monosem_jax/experiments/configs/``) or as the repository did before the
launchers moved into the package
(``--config=experiments/configs/recommender.py:...``).
``--help`` lists the fields of the config (the one ``--config`` names, else
the default) with their defaults and one line each, from the config
module's ``FIELD_HELP`` (:func:`config_fields_help`).
:func:`console_script` makes a launcher's ``main`` the target of its console
script (pyproject.toml ``[project.scripts]``: ``monosem-run`` ...) and of
the repository's shim (``python -m experiments.X``, a module that imports
``run``), which behave as ``python -m monosem_jax.experiments.X`` does,
``--help`` included.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags
from ml_collections.config_flags import tuple_parser

from monosem_jax.errors import ConfigError, MonosemError

# The flags this module defines for a launcher (the config flag) are key
# flags of that launcher, so that its ``--help`` lists them.
flags.disclaim_key_flags()

#: The shipped config files (``monosem_jax/experiments/configs``, package
#: files: a checkout's and an installed wheel's alike).
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')
#: The folders a path may name :data:`CONFIGS` by, from any working
#: directory: the package's, and the repository's from before the launchers
#: moved into the package (``experiments/configs/``, as the docs write it).
CONFIGS_PREFIXES = (('monosem_jax', 'experiments', 'configs'),
                    ('experiments', 'configs'))


def resolve_config_path(path: str) -> str:
  """The config file a ``--config`` path names, from any working directory.

  In order: ``path`` itself when it exists (absolute, or from the working
  directory: a user's own config); a bare file name in :data:`CONFIGS`
  (``recommender.py``); a relative path beginning with one of
  :data:`CONFIGS_PREFIXES` (``experiments/configs/recommender.py``,
  ``monosem_jax/experiments/configs/recommender.py``), mapped onto
  :data:`CONFIGS`.

  >>> resolve_config_path('sweep.py') == os.path.join(CONFIGS, 'sweep.py')
  True
  >>> (resolve_config_path('experiments/configs/sweep.py')
  ...  == os.path.join(CONFIGS, 'sweep.py'))
  True

  Raises:
    ConfigError: none of them exists (one line with the shipped names).
  """
  candidates = [path]
  if not os.path.isabs(path):
    parts = tuple(os.path.normpath(path).split(os.sep))
    if len(parts) == 1:
      candidates.append(os.path.join(CONFIGS, path))
    for prefix in CONFIGS_PREFIXES:
      if parts[:len(prefix)] == prefix and len(parts) > len(prefix):
        candidates.append(os.path.join(CONFIGS, *parts[len(prefix):]))
  for candidate in candidates:
    if os.path.isfile(candidate):
      return candidate
  raise ConfigError(f'config file {path!r} not found: not in the working '
                    f'directory {os.getcwd()}, nor a shipped config '
                    f'({_shipped_configs()} in {CONFIGS})')


def _shipped_configs() -> str:
  """The names of the config files in :data:`CONFIGS`, comma-separated."""
  return ', '.join(sorted(f for f in os.listdir(CONFIGS)
                          if f.endswith('.py') and not f.startswith('_')))


class _ResolvedConfigFile(flags.ArgumentParser):
  """ml_collections' config file parser (``inner``), the path resolved
  first (:func:`resolve_config_path`): a file not found is refused here, in
  one line, where ml_collections would raise an OSError on first use."""

  def __init__(self, inner: flags.ArgumentParser):
    self._inner = inner

  def parse(self, argument):
    if isinstance(argument, str):
      file, sep, arg = argument.partition(':')
      argument = resolve_config_path(file) + sep + arg
    return self._inner.parse(argument)

  def flag_type(self):
    return self._inner.flag_type()


def _named_config(argv: list[str], name: str) -> str | None:
  """The ``FILE[:ARG]`` of ``--name=FILE[:ARG]`` in ``argv`` (None if
  absent)."""
  for arg in argv[1:]:
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
  return None


def _config_of(argv: list[str], name: str):
  """The config ``--name`` builds: from ``--name=FILE[:ARG]`` in ``argv``,
  else the flag's default (None if neither can be had)."""
  named = _named_config(argv, name)
  if named is not None:
    return _load_config(named)
  default = flags.FLAGS[name].default if name in flags.FLAGS else None
  return default if hasattr(default, 'keys') else None


def _load_config_module(config_arg: str):
  """``(module, config)`` that a ``FILE[:ARG]`` flag value names and builds,
  or None."""
  path, _, arg = config_arg.partition(':')
  try:
    spec = importlib.util.spec_from_file_location('_launch_config',
                                                  resolve_config_path(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, (module.get_config(arg) if arg else module.get_config())
  except Exception:  # pylint: disable=broad-except
    return None


def _load_config(config_arg: str):
  """The config a ``FILE[:ARG]`` flag value builds, or None."""
  loaded = _load_config_module(config_arg)
  return loaded[1] if loaded else None


def _leaves(config, prefix: str = ''):
  """``(dotted path, value)`` of every field of ``config`` that is not a
  section, depth first, in key order."""
  for key, value in config.items():
    path = f'{prefix}{key}'
    if hasattr(value, 'keys') and hasattr(value, 'items') and value.keys():
      yield from _leaves(value, path + '.')
    else:
      yield path, value


def field_help(helps: dict, path: str) -> str | None:
  """The line ``helps`` (a config module's ``FIELD_HELP``) gives the dotted
  field ``path``; None when ``path`` or a section above it maps to None (a
  field not listed); KeyError when it has no line.

  >>> helps = {'train.seed': 'the seed', 'mf.dataset': None}
  >>> field_help(helps, 'train.seed'), field_help(helps, 'mf.dataset.name')
  ('the seed', None)
  """
  if path in helps:
    return helps[path]
  parts = path.split('.')
  for i in range(len(parts) - 1, 0, -1):
    if helps.get('.'.join(parts[:i]), '') is None:
      return None
  raise KeyError(path)


def config_fields_help(config, helps: dict, name: str = 'config') -> list[str]:
  """One line per field of ``config``: ``- name.FIELD = default: help``
  (``helps`` is the config module's ``FIELD_HELP``, :func:`field_help`);
  a field it does not cover is listed without a description."""
  lines = []
  for path, value in _leaves(config):
    try:
      text = field_help(helps, path)
    except KeyError:
      text = ''
    if text is None:
      continue
    shown = value.to_dict() if hasattr(value, 'to_dict') else value
    lines.append(f'- {name}.{path} = {shown!r}' + (f': {text}' if text else ''))
  return lines


def _config_flag_help(name: str, help_string: str, listed: str | None) -> str:
  """``help_string``, then the fields of the config ``listed`` (a
  ``FILE[:ARG]``) builds, one a line (:func:`config_fields_help`)."""
  loaded = _load_config_module(listed) if listed else None
  if loaded is None:
    return help_string
  module, config = loaded
  lines = config_fields_help(config, getattr(module, 'FIELD_HELP', {}), name)
  return '\n'.join([
      help_string,
      f'A file (FILE[:ARG]); from any folder, a shipped config by its name '
      f'({_shipped_configs()}) or as experiments/configs/NAME. Fields of '
      f'{listed}, with their defaults (set one with --{name}.FIELD=VALUE):',
      *lines])


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


def define_config_file(name: str, default: str | None, help_string: str,
                       fields_of: str | None = None):
  """``config_flags.DEFINE_config_file`` (unlocked), a key flag of the
  launcher that calls it.

  Every value, the default too, is found by :func:`resolve_config_path`, so
  ``python -m monosem_jax.experiments.run`` works from any folder. The help lists the
  fields of the config ``--name`` names on the command line, else of
  ``default``, else of ``fields_of`` (a ``FILE[:ARG]``, for a flag without a
  default). With a default file, ml_collections applies the command line's
  overrides while the flag is defined, before :func:`parse_flags` runs; an
  unknown field there exits with the same one line.
  """
  listed = _named_config(sys.argv, name) or default or fields_of
  help_string = _config_flag_help(name, help_string, listed)
  if default:
    file, sep, arg = default.partition(':')
    default = resolve_config_path(file) + sep + arg
    _exit_if_repeated(sys.argv)
  try:
    holder = config_flags.DEFINE_config_file(name, default, help_string,
                                             lock_config=False)
    flag = flags.FLAGS[name]
    flag.parser = _ResolvedConfigFile(flag.parser)
    return holder
  except (AttributeError, KeyError):
    _exit_if_unknown_field(
        sys.argv, lambda n: _load_config(default) if n == name and default
        else None)
    raise
  except flags.Error as e:
    sys.exit(_flag_error_line(e))


def console_script(main):
  """The entry point of a launcher's console script (pyproject.toml
  ``[project.scripts]``) and of the repository's shim
  (``experiments/X.py``): a function of no argument that runs the absl
  ``main`` as ``python -m monosem_jax.experiments.X`` does. Each launcher
  ends with::

    run = console_script(main)

    if __name__ == '__main__':
      run()

  Under a console script or a shim the main module is the wrapper, which
  absl's ``--help`` would describe (no docstring, no flags): the launcher
  module's docstring and key flags are lent to it first.
  """

  def run() -> None:
    module = sys.modules[main.__module__]
    if module.__name__ != '__main__':
      for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
      sys.modules['__main__'].__doc__ = module.__doc__
    app.run(main, flags_parser=parse_flags)

  return run


def refusals_in_one_line(main):
  """Decorates an absl ``main``: MonosemError -> ``error: ...``, status 1."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except MonosemError as e:
      sys.exit(f'error: {e}')

  return wrapped

