r"""Exports one config of a sweep as a portable SAE: safetensors + cfg.json.

  python -m experiments.export_sae --workdir=runs/ml1m_mf_sweep --index=19 \
      --out=exported/sae19

Writes OUT/sae.safetensors (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, named
like SAELens's) and OUT/cfg.json (architecture, activation and k, Matryoshka
prefixes, normalisation, the config's hyper-parameters, the recommender's
content hash), as one set; an OUT holding a previous export is replaced.
Load it with ``monosem_jax.load_sae(OUT)``. The logic lives in
monosem_jax.analysis.export.export_config (format: monosem_jax/sae/export.py).
A few seconds.
"""

from __future__ import annotations

from absl import app, flags, logging

from monosem_jax.experiments.launch import console_script, refusals_in_one_line
from monosem_jax.analysis.export import export_config

_WORKDIR = flags.DEFINE_string('workdir', None, 'A sweep workdir.',
                               required=True)
_INDEX = flags.DEFINE_integer('index', None, 'The config to export (the '
                              '"config" column of fidelity.csv).',
                              required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (new, empty, or a '
                           'previous export, replaced).', required=True)
_ALLOW_DIVERGED = flags.DEFINE_bool(
    'allow_diverged', False, 'Export a diverged config\'s last finite state.')


@refusals_in_one_line
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  out = export_config(_WORKDIR.value, _INDEX.value, _OUT.value,
                      allow_diverged=_ALLOW_DIVERGED.value)
  print(f'exported config {_INDEX.value} of {_WORKDIR.value} to {out}')


#: The console script ``monosem-export-sae`` (pyproject.toml).
run = console_script(main)

if __name__ == '__main__':
  run()
