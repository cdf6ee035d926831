"""What every absl launcher shares: flag parsing and one-line refusals.

``app.run(main, flags_parser=parse_flags)`` turns an override of a config
field that does not exist (``--config.grid.sead=...``) into one line naming
the field and the valid ones, where ml_collections would raise a bare
``AttributeError``. :func:`refusals_in_one_line` wraps ``main`` so that a
deliberate refusal of the library (:class:`~monosem_jax.errors.MonosemError`:
bad data, an invalid config, a busy or foreign workdir) prints as
``error: <message>`` with exit status 1, without a traceback.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import sys

from absl import flags

from monosem_jax.errors import MonosemError


def _config_value(argv, name):
  for arg in argv[1:]:
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
  default = flags.FLAGS[name].default if name in flags.FLAGS else None
  return getattr(default, 'path', None) if default is not None else None


def _load_config(config_arg: str | None):
  """The config a ``FILE[:ARG]`` flag value builds, or None."""
  if not config_arg:
    return None
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


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; an unknown config field exits with one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError):
    for arg in argv[1:]:
      m = re.match(r'--(\w+)\.([\w.]+)(=.*)?$', arg)
      if not m:
        continue
      name, path = m.group(1), m.group(2).split('.')
      config = _load_config(_config_value(argv, name))
      found = _unknown_field(config, path) if config is not None else None
      if found is None:
        continue
      i, known = found
      where = '.'.join([name] + path[:i + 1])
      close = difflib.get_close_matches(path[i], known, n=1)
      hint = f' (did you mean {close[0]}?)' if close else ''
      sys.exit(f'error: {arg.split("=", 1)[0]}: {where} is not a config '
               f'field{hint}; valid here: {", ".join(known)}')
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

