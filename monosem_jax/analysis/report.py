"""``report.md``: the analysis of a sweep as one Markdown page.

:func:`markdown_table` renders a DataFrame without extra dependencies;
:func:`render` assembles titled sections (text, tables, figures) in order.

Example:
  >>> import pandas as pd
  >>> print(markdown_table(pd.DataFrame({'a': [1, 2], 'b': [0.12345, None]})))
  | a | b |
  |---|---|
  | 1 | 0.123 |
  | 2 |  |
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import pandas as pd


def _cell(v, digits: int) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return ''
  if isinstance(v, float):
    if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e6):
      return f'{v:.{digits}g}'
    return f'{v:.{digits}f}'.rstrip('0').rstrip('.') if digits else f'{v:.0f}'
  return str(v).replace('|', '\\|').replace('\n', ' ')


def markdown_table(table: pd.DataFrame, digits: int = 3,
                   max_rows: int | None = None) -> str:
  """A GitHub Markdown table of ``table`` (floats to ``digits`` places)."""
  t = table if max_rows is None else table.head(max_rows)
  lines = ['| ' + ' | '.join(str(c) for c in t.columns) + ' |',
           '|' + '---|' * len(t.columns)]
  for row in t.itertuples(index=False):
    lines.append('| ' + ' | '.join(_cell(v, digits) for v in row) + ' |')
  if max_rows is not None and len(table) > max_rows:
    lines.append(f'\n({len(table) - max_rows} more rows in the CSV)')
  return '\n'.join(lines)


@dataclasses.dataclass
class Section:
  """A titled part of the report: paragraphs, tables and figures, in order."""
  title: str
  parts: list = dataclasses.field(default_factory=list)

  def text(self, s: str) -> 'Section':
    self.parts.append(s.strip())
    return self

  def table(self, t: pd.DataFrame, digits: int = 3,
            max_rows: int | None = None) -> 'Section':
    self.parts.append(markdown_table(t, digits, max_rows))
    return self

  def figure(self, path: str, caption: str) -> 'Section':
    self.parts.append(f'![{caption}]({path})\n\n*{caption}*')
    return self


def render(title: str, sections: Sequence[Section], preamble: str = '') -> str:
  """The whole page."""
  out = [f'# {title}', preamble.strip()] if preamble else [f'# {title}']
  for s in sections:
    out.append(f'## {s.title}')
    out.extend(s.parts)
  return '\n\n'.join(out) + '\n'
