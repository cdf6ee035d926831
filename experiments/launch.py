"""What every absl launcher shares: flag parsing and one-line refusals.

``app.run(main, flags_parser=parse_flags)`` with the config flag from
:func:`define_config_file` turns an override of a config field that does not
exist (``--config.grid.sead=...``) into one line naming the field and the
valid ones, where ml_collections would raise a bare ``AttributeError``. :func:`refusals_in_one_line` wraps ``main`` so that a
deliberate refusal of the library (:class:`~monosem_jax.errors.MonosemError`:
bad data, an invalid config, a busy or foreign workdir) prints as
``error: <message>`` with exit status 1, without a traceback.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os
import re
import sys

from absl import flags
from ml_collections import config_flags

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


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; an unknown config field exits with one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError):
    _exit_if_unknown_field(argv, lambda name: _config_of(argv, name))
    raise


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
  try:
    return config_flags.DEFINE_config_file(name, default, help_string,
                                           lock_config=False)
  except (AttributeError, KeyError):
    _exit_if_unknown_field(
        sys.argv, lambda n: _load_config(default) if n == name and default
        else None)
    raise


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
  it refuse, before any work, a dataset that has none (e.g. atomic files
  without ``NAME.item``), where the analysis would fail at its end."""
  if dataset.n_concepts == 0:
    raise ConfigError(
        f'{dataset.name}: the items have no concept labels, which the '
        'analysis matches neurons against (atomic files: a token_seq field '
        'of NAME.item, chosen by --config.dataset.options.concept_field)')
