"""The progress line: rate and ETA from the steady state, no made-up rate."""
import io

from lumiere_jax import progress as progress_lib


def _lines(stream):
  return stream.getvalue().splitlines()


def test_rate_and_eta_are_measured_from_the_first_update(monkeypatch):
  # Seconds since the loop began: the first update comes after a 100 s compile.
  clock = iter([100.0, 100.0, 110.0, 110.0])
  monkeypatch.setattr(progress_lib.time, "monotonic", lambda: next(clock))
  stream = io.StringIO()
  prog = progress_lib.Progress("train", 30, unit="steps", interval=0.0, stream=stream)
  prog.update(10)
  prog.update(20)
  assert _lines(stream)[1] == "train: 20/30 (67%) 1.00 steps/s ETA 0:10"


def test_a_loop_done_in_one_update_shows_no_rate():
  stream = io.StringIO()
  prog = progress_lib.Progress("sample", 6, unit="videos", interval=0.0, stream=stream)
  prog.update(6)
  prog.close()
  assert _lines(stream) == ["sample: 6/6 (100%) ? videos/s ETA ?"] * 2
