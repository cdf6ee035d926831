"""The launchers and their config files, the top layer of the package
(docs/architecture.md#where-the-launchers-live): each launcher turns flags
and a config into library calls, printing lines and an exit status. It may
import everything; nothing else in ``monosem_jax`` imports it.

* ``launch``: what every launcher shares (flag parsing, one-line refusals,
  config files found from any folder, ``--help`` listing a config's fields,
  the console-script entry point);
* ``run``, ``train_recommender``, ``sweep``, ``analyze``, ``export_sae``,
  ``import_recommender``, ``fetch``: one launcher each, run as
  ``python -m monosem_jax.experiments.X``, as its console script
  (``monosem-run`` ..., pyproject.toml) or, from a checkout, as
  ``python -m experiments.X`` (a shim in the repository's ``experiments/``);
* ``configs``: the ml_collections config files (``get_config(arg)``), found
  by ``--config=NAME.py:ARG`` from any working directory.
"""
