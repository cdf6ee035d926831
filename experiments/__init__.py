"""The repository's commands, not installed (pyproject.toml installs
``monosem_jax*`` only): one shim per launcher of
:mod:`monosem_jax.experiments`, so that ``python -m experiments.X`` keeps
working from a checkout, and the measurements for developers (the
``bench_*.py`` benchmarks, ``device_check.py``), which import the package's
configs (``monosem_jax.experiments.configs``)."""
