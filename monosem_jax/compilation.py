"""Compilation: JAX's persistent cache (opt-in) and a compile-time clock.

* :func:`use_persistent_cache`: with ``MONOSEM_COMPILATION_CACHE=DIR`` in
  the environment, every program the process compiles is stored in ``DIR``
  (JAX's ``jax_compilation_cache_dir``, with
  ``jax_persistent_cache_min_compile_time_secs = 0``) and a later process
  with the same program, shapes, options, device kind and JAX version loads
  it instead of compiling it again: a resumed or repeated sweep starts in
  seconds. ``import monosem_jax`` calls it, so the variable applies to the
  launchers and to library users alike; it must be set before the process
  compiles its first program (JAX fixes its cache then). Off by default:
  the cache grows with every new shape (delete ``DIR`` at will; JAX's own
  ``JAX_COMPILATION_CACHE_DIR`` does the same without the zero threshold).
* :class:`CompileClock`: the seconds XLA spends compiling (or loading from
  the persistent cache) while it is active, from ``jax.monitoring`` events;
  ``line()`` is the sweep's ``compile: X s`` log line.

Example:
  >>> import jax, jax.numpy as jnp
  >>> with CompileClock() as clock:
  ...   _ = jax.jit(lambda x: x * 3.0)(jnp.ones(7)).block_until_ready()
  >>> clock.programs >= 1 and clock.seconds > 0
  True
"""

from __future__ import annotations

import os

import jax

#: The environment variable naming the persistent cache's folder.
CACHE_ENV = 'MONOSEM_COMPILATION_CACHE'

#: ``jax.monitoring`` events: the XLA compilation of one program (a load
#: from the persistent cache included), and a load from that cache.
_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'


def use_persistent_cache(directory: str | None = None) -> str | None:
  """Points JAX's persistent compilation cache at ``directory``.

  Args:
    directory: the cache folder (created by JAX); None: ``$MONOSEM_COMPILATION_CACHE``
      (unset or empty: nothing changes).

  Returns:
    The absolute folder in use, or None.
  """
  directory = directory or os.environ.get(CACHE_ENV, '').strip() or None
  if directory is None:
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  jax.config.update('jax_compilation_cache_dir', directory)
  # Every program, however fast it compiles: a sweep has a few large ones
  # and many small ones, and a repeated run should skip them all.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  return directory


class CompileClock:
  """Counts XLA compilations while active (a context manager).

  Attributes:
    seconds: wall seconds of XLA compilations (loads from the persistent
      cache included).
    programs: how many programs were compiled or loaded.
    cache_hits: how many of them came from the persistent cache.
  """

  def __init__(self):
    self.seconds, self.programs, self.cache_hits = 0.0, 0, 0

  def _duration(self, event: str, duration: float, **_) -> None:
    if event == _COMPILE_EVENT:
      self.seconds += duration
      self.programs += 1

  def _event(self, event: str, **_) -> None:
    if event == _CACHE_HIT_EVENT:
      self.cache_hits += 1

  def __enter__(self) -> 'CompileClock':
    jax.monitoring.register_event_duration_secs_listener(self._duration)
    jax.monitoring.register_event_listener(self._event)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._duration)
    jax.monitoring.unregister_event_listener(self._event)

  def line(self) -> str:
    """``compile: X s (N programs, H from the persistent cache)``."""
    cache = jax.config.jax_compilation_cache_dir
    where = (f', {self.cache_hits} from the persistent cache {cache}' if cache
             else f'; no persistent cache ({CACHE_ENV}=DIR keeps them)')
    return (f'compile: {self.seconds:.1f} s ({self.programs} '
            f'program{"s" if self.programs != 1 else ""}{where})')
