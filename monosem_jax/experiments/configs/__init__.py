"""ml_collections config files: ``get_config(arg)`` in each."""


def parse_dataset_model(arg: str, datasets, models,
                        default: str = 'ml-1m,mf') -> tuple[str, str]:
  """Splits a ``'DATASET,MODEL'`` config argument, checking both names."""
  parts = [p.strip() for p in (arg or default).split(',')]
  if len(parts) != 2 or parts[0] not in datasets or parts[1] not in models:
    raise ValueError(f'config argument {arg!r}: expected DATASET,MODEL with '
                     f'DATASET in {tuple(datasets)} and MODEL in {tuple(models)}')
  return parts[0], parts[1]
