"""Shared test helpers: fixture paths and the real-data switch."""

import os

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def fixture_dir(name: str) -> str:
  return os.path.join(FIXTURES, name)


@pytest.fixture
def real_data_dir():
  """``$MONOSEM_DATA_DIR``, or skip with the reason."""
  path = os.environ.get('MONOSEM_DATA_DIR')
  if not path:
    pytest.skip('MONOSEM_DATA_DIR is not set: real MovieLens/Last.FM tests '
                'need it (CI sets it to ../shared/data)')
  if not os.path.isdir(path):
    pytest.fail(f'MONOSEM_DATA_DIR={path!r} is not a folder')
  return path
