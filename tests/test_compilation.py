"""How programs are compiled (issue 19, items 1b and 3): the recommender's
training program with XLA's deterministic GPU ops (and its opt-out), the
opt-in persistent compilation cache, and the compile-time line.

XLA_FLAGS and the compilation cache are read once per process, so these
tests run small scripts in subprocesses. XLA's ``--xla_dump_to`` writes each
compiled module's ``*.debug_options``: the options it was compiled with,
visible on a CPU too (where the GPU option itself changes nothing).
"""

import glob
import os
import re
import subprocess
import sys

import pytest

from monosem_jax import compilation
from monosem_jax.errors import ConfigError
from monosem_jax.recommenders import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Compiles the MF training epoch twice: as the library does by default,
#: then with the opt-out set.
_TRAIN_TWICE = """
import os
from monosem_jax.data import protocol, synthetic
from monosem_jax.recommenders import loop
from monosem_jax.recommenders.config import TrainConfig
split = protocol.make_split(synthetic.make_world(synthetic.WorldConfig(
    n_users=300, n_items=120)), seed=0)
cfg = TrainConfig(kind='mf', dim=4, epochs=1, batch_size=256)
loop.fit(cfg, split)
os.environ['MONOSEM_GPU_NONDETERMINISTIC'] = '1'
loop.fit(cfg, split)
"""


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', compilation.CACHE_ENV,
                      'JAX_COMPILATION_CACHE_DIR', loop.NONDETERMINISTIC_ENV)}
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  env.update(extra)
  return env


def _python(script: str, env: dict, timeout: int = 300):
  run = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
  assert run.returncode == 0, run.stderr[-3000:]
  return run


def _module_number(path: str) -> int:
  return int(re.search(r'module_(\d+)', os.path.basename(path))[1])


def test_training_program_is_compiled_with_deterministic_gpu_ops(tmp_path):
  dump = tmp_path / 'dump'
  _python(_TRAIN_TWICE, _env(XLA_FLAGS=f'--xla_dump_to={dump} '
                             '--xla_dump_hlo_module_re=.*epoch.*'))
  options = sorted(glob.glob(str(dump / '*jit_epoch*.debug_options')),
                   key=_module_number)
  assert len(options) == 2, os.listdir(dump)
  default, opted_out = (open(p).read() for p in options)
  assert 'xla_gpu_deterministic_ops: true' in default
  assert 'xla_gpu_deterministic_ops' not in opted_out


@pytest.mark.parametrize('value, expect', [
    (None, {'xla_gpu_deterministic_ops': True}),
    ('0', {'xla_gpu_deterministic_ops': True}),
    ('1', {}),
])
def test_training_compiler_options_follow_the_opt_out(monkeypatch, value,
                                                      expect):
  monkeypatch.delenv(loop.NONDETERMINISTIC_ENV, raising=False)
  if value is not None:
    monkeypatch.setenv(loop.NONDETERMINISTIC_ENV, value)
  assert loop.training_compiler_options() == expect
  assert loop.training_compiler_options(deterministic=False) == {}
  assert loop.training_compiler_options(deterministic=True) == {
      'xla_gpu_deterministic_ops': True}


def test_a_bad_opt_out_value_is_refused_naming_the_variable(monkeypatch):
  monkeypatch.setenv(loop.NONDETERMINISTIC_ENV, 'yes')
  with pytest.raises(ConfigError, match=r"MONOSEM_GPU_NONDETERMINISTIC='yes'"
                     r".*'0' or '1'"):
    loop.training_compiler_options()


#: Compiles one small program and prints what the clock saw.
_COMPILE_ONE = """
import jax, jax.numpy as jnp
import monosem_jax
from monosem_jax import compilation
with compilation.CompileClock() as clock:
  jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.arange(5.0)).block_until_ready()
print(clock.programs, clock.cache_hits)
print(clock.line())
"""


def test_compilation_cache_is_opt_in_and_serves_a_second_process(tmp_path):
  cache = tmp_path / 'cache'

  def run(**env):
    out = _python(_COMPILE_ONE, _env(**env)).stdout.splitlines()
    programs, hits = map(int, out[0].split())
    return programs, hits, out[1]

  programs, hits, line = run()
  assert programs >= 1 and hits == 0 and 'no persistent cache' in line
  assert not cache.exists()
  programs, hits, line = run(MONOSEM_COMPILATION_CACHE=str(cache))
  assert programs >= 1 and hits == 0 and os.listdir(cache)
  again, hits, line = run(MONOSEM_COMPILATION_CACHE=str(cache))
  assert again == programs and hits == programs, line
  assert f'{hits} from the persistent cache {cache}' in line
