"""Progress lines: about N lines for long work, every step under --verbosity=0."""

from absl import logging

from monosem_jax.progress import Progress


def test_long_work_gets_about_twenty_lines_with_first_and_last():
  p = Progress(1000, lines=20)
  due = [i for i in range(1, 1001) if p.due(i)]
  assert due[0] == 1 and due[-1] == 1000 and len(due) == 21
  assert Progress(7, lines=20).every == 1        # short work: every step


def test_verbosity_info_reports_every_step():
  old = logging.get_verbosity()
  try:
    logging.set_verbosity(logging.INFO)
    assert Progress.for_launcher(1000).every == 1
    logging.set_verbosity(logging.WARNING)
    assert Progress.for_launcher(1000).every == 50
  finally:
    logging.set_verbosity(old)


def test_eta_counts_only_this_runs_steps():
  ticks = iter([0.0, 30.0])
  p = Progress(100, clock=lambda: next(ticks))
  # resumed after step 40; 10 steps in 30 s; 50 left -> 150 s
  assert p.eta(50, start=40) == '2m30s'
