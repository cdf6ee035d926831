"""Export one config of a sweep as a portable SAE (docs/method.md#exported-saes).

:func:`export_config` reads the sweep through
:func:`~monosem_jax.analysis.workdirs.open_sweep` (the recommender it
explains is checked by content hash) and writes ``OUT/sae.safetensors`` and
``OUT/cfg.json`` with :func:`monosem_jax.sae.export.write_sae`. Beside the
architecture, ``cfg.json`` records:

* ``hparams``: the config's hyper-parameters (``lambda_pred``, ...,
  ``dict_size``, ``k``);
* ``training``: the epoch of the checkpoint, ``finite``, ``diverged_step``,
  the spec's training precision and the whole ``sweep_spec``;
* ``recommender``: ``kind``, ``dataset``, ``fingerprint`` (SHA-256 of the
  frozen recommender) and ``workdir``, from ``sweep.json``;
* ``sweep``: the sweep folder's name and path, ``config`` (the index) and
  ``num_configs``.

Read it back with :func:`monosem_jax.load_sae`, which needs none of this
package's sweep machinery.

Example::

  export_config('runs/ml1m_mf_sweep', 19, 'exported/sae19')
  sae = load_sae('exported/sae19')
  codes = sae.encode(item_embeddings)          # (n_items, dict_size)
"""

from __future__ import annotations

import os

import numpy as np

from monosem_jax.analysis import workdirs
from monosem_jax.analysis.interventions import Codec
from monosem_jax.errors import ConfigError
from monosem_jax.sae import export
from monosem_jax.sweep.spec import FIELDS
from monosem_jax.sweep.workdir import SweepWorkdir


def check_index(view: workdirs.SweepView, i: int) -> None:
  """Refuses an index that is not a config of the sweep, naming the range."""
  n = view.num_configs
  if not (isinstance(i, (int, np.integer)) and 0 <= i < n):
    raise ConfigError(f'--index={i}: {view.workdir} has {n} configs; '
                      f'pass an index in [0, {n - 1}]')


def check_finite(view: workdirs.SweepView, i: int, sae: Codec) -> None:
  """Refuses a diverged config (a frozen last finite state) or non-finite
  weights, naming the step."""
  finite = all(np.isfinite(np.asarray(v)).all() for v in sae.params.values())
  if not finite:
    raise ConfigError(f'config {i} of {view.workdir} has NaN or inf '
                      'weights; export another config')
  if not bool(np.asarray(view.state.finite)[i]):
    raise ConfigError(
        f'config {i} of {view.workdir} diverged at step '
        f'{int(np.asarray(view.state.diverged_step)[i])} (its weights are the '
        'last finite state, not a trained SAE); pick another config, or pass '
        '--allow_diverged to export it anyway')


def export_info(view: workdirs.SweepView, i: int) -> dict:
  """The ``cfg.json`` fields beyond the architecture (module docstring)."""
  rec = SweepWorkdir(view.workdir).recorded_recommender()
  hp = view.hparams.config(i)
  return {
      'hparams': {f: hp[f] for f in FIELDS},
      'training': {'epoch': view.epoch,
                   'finite': bool(np.asarray(view.state.finite)[i]),
                   'diverged_step': int(np.asarray(view.state.diverged_step)[i]),
                   'precision': view.spec.precision,
                   'sweep_spec': view.spec.to_json_dict()},
      'recommender': {key: rec.get(key) for key in
                      ('kind', 'dataset', 'fingerprint', 'workdir')},
      'sweep': {'name': os.path.basename(view.workdir),
                'workdir': view.workdir, 'config': int(i),
                'num_configs': view.num_configs},
  }


def export_config(workdir: str, i: int, out: str,
                  allow_diverged: bool = False, step: int | None = None
                  ) -> str:
  """Writes config ``i`` of the sweep in ``workdir`` to ``out``.

  Args:
    workdir: a sweep folder (``python -m experiments.sweep --workdir``).
    i: the config, in ``[0, num_configs)``.
    out: the export folder: new, empty, or a previous export (replaced as
      one set).
    allow_diverged: export a diverged config's last finite state anyway
      (``cfg.json`` records ``training.finite = false``).
    step: the checkpoint epoch (default: the latest).

  Returns:
    The absolute path of ``out``.

  Raises:
    WorkdirError: no sweep in ``workdir``, or its recommender changed.
    ConfigError: ``i`` out of range, or the config diverged.
    ExportError: ``out`` holds something other than an export.
  """
  view = workdirs.open_sweep(workdir, step)
  check_index(view, i)
  sae = view.sae(int(i))
  if not allow_diverged:
    check_finite(view, i, sae)
  return export.write_sae(out, sae.params, sae.cfg, sae.k,
                          export_info(view, i))
