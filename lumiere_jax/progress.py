"""A progress line with rate and ETA for every long loop (dataset build, training, sampling)."""
import sys
import time


def _fmt_seconds(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
  """Prints `name: done/total (pct) rate unit/s ETA` at most every `interval` seconds.

  Rate and ETA are measured from the first `update` after `start`, so one-off costs such as
  compilation do not distort the estimate of the steady state.
  """

  def __init__(self, name: str, total: int, unit: str = "it", interval: float = 5.0,
               stream=None, start: int = 0):
    self.name = name
    self.total = total
    self.unit = unit
    self.interval = interval
    self.stream = stream or sys.stderr
    self._start_count = start
    self._t0 = None
    self._last_print = 0.0
    self.count = start

  def update(self, count: int, extra: str = "", force: bool = False) -> None:
    now = time.monotonic()
    if self._t0 is None:
      self._t0, self._start_count = now, count
    self.count = count
    if not force and now - self._last_print < self.interval:
      return
    self._last_print = now
    self.stream.write(self.line(extra) + "\n")
    self.stream.flush()

  @property
  def rate(self) -> float:
    if self._t0 is None:
      return 0.0
    elapsed = time.monotonic() - self._t0
    return (self.count - self._start_count) / elapsed if elapsed > 0 else 0.0

  def line(self, extra: str = "") -> str:
    rate = self.rate
    pct = 100.0 * self.count / self.total if self.total else 100.0
    eta = _fmt_seconds((self.total - self.count) / rate) if rate > 0 else "?"
    # No rate before a second update: a loop done in one update (e.g. all videos in one
    # batch) has nothing to measure it from, and "0.00/s" would read as a stall.
    rate_text = f"{rate:.2f}" if self.count > self._start_count else "?"
    text = (f"{self.name}: {self.count}/{self.total} ({pct:.0f}%) "
            f"{rate_text} {self.unit}/s ETA {eta}")
    return f"{text} {extra}".rstrip()

  def close(self, extra: str = "") -> None:
    self.update(self.count, extra, force=True)
