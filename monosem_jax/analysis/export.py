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
from monosem_jax.errors import ConfigError
from monosem_jax.sae import export, model
from monosem_jax.sweep import checkpoint
from monosem_jax.sweep.spec import FIELDS


def check_index(view: workdirs.SweepView, index: int) -> None:
  """Refuses an index that is not a config of the sweep, naming the range."""
  n = view.num_configs
  if not (isinstance(index, (int, np.integer)) and 0 <= index < n):
    raise ConfigError(f'--index={index}: {view.workdir} has {n} configs; '
                      f'pass an index in [0, {n - 1}]')


def check_finite(view: workdirs.SweepView, index: int, hp: dict,
                 params: dict) -> None:
  """Refuses a diverged config (a frozen last finite state) or non-finite
  weights, naming the step."""
  finite = all(np.isfinite(np.asarray(v)).all() for v in params.values())
  if not finite:
    raise ConfigError(f'config {index} of {view.workdir} has NaN or inf '
                      'weights; export another config')
  if not hp['finite']:
    raise ConfigError(
        f'config {index} of {view.workdir} diverged at step '
        f'{hp["diverged_step"]} (its weights are the last finite state, not a '
        'trained SAE); pick another config, or pass --allow_diverged to '
        'export it anyway')


def export_info(view: workdirs.SweepView, index: int, hp: dict) -> dict:
  """The ``cfg.json`` fields beyond the architecture (module docstring)."""
  _, _, prov = checkpoint.read_sweep_json(view.workdir, provenance=True)
  rec = dict((prov or {}).get('recommender') or {})
  return {
      'hparams': {f: hp[f] for f in FIELDS},
      'training': {'epoch': hp['epoch'], 'finite': hp['finite'],
                   'diverged_step': hp['diverged_step'],
                   'precision': view.spec.precision,
                   'sweep_spec': view.spec.to_json_dict()},
      'recommender': {key: rec.get(key) for key in
                      ('kind', 'dataset', 'fingerprint', 'workdir')},
      'sweep': {'name': os.path.basename(view.workdir),
                'workdir': view.workdir, 'config': int(index),
                'num_configs': view.num_configs},
  }


def export_config(workdir: str, index: int, out: str,
                  allow_diverged: bool = False, step: int | None = None
                  ) -> str:
  """Writes config ``index`` of the sweep in ``workdir`` to ``out``.

  Args:
    workdir: a sweep folder (``python -m experiments.sweep --workdir``).
    index: the config, in ``[0, num_configs)``.
    out: the export folder: new, empty, or a previous export (replaced as
      one set).
    allow_diverged: export a diverged config's last finite state anyway
      (``cfg.json`` records ``training.finite = false``).
    step: the checkpoint epoch (default: the latest).

  Returns:
    The absolute path of ``out``.

  Raises:
    WorkdirError: no sweep in ``workdir``, or its recommender changed.
    ConfigError: ``index`` out of range, or the config diverged.
    ExportError: ``out`` holds something other than an export.
  """
  view = workdirs.open_sweep(workdir, step)
  check_index(view, index)
  params, hp = view.config(int(index))
  if not allow_diverged:
    check_finite(view, index, hp, params)
  cfg = model.SAEConfig(**hp['sae_config'])
  k = hp['k'] if cfg.activation != 'relu' else None
  return export.write_sae(out, params, cfg, k,
                          export_info(view, index, hp))
