"""Progress lines for long jobs: `what: done/total unit (percent), rate, ETA`, one every few seconds.

    bar = progress.Progress('export', total=500_000, unit='images')
    for batch in ...:
      ...
      bar.update(len(batch))
    bar.close()

The lines go through absl logging (so into the training run's log files) once absl's flags are
parsed, and to stderr otherwise (the data, generate, embed and evaluate commands). Between the
first line (which names the total) and the last (which gives the elapsed time), at most one line
is written every `INTERVAL_SECONDS`.
"""
import datetime
import sys
import time

from absl import flags, logging

INTERVAL_SECONDS = 10.0


def format_seconds(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(round(seconds))))


def log(message: str) -> None:
  """One line: absl logging.info under an absl app, else stderr."""
  if flags.FLAGS.is_parsed():
    logging.info('%s', message)
  else:
    print(message, file=sys.stderr, flush=True)


class Progress:
  """Counts work done towards `total`; `done` is work already there (a resumed job), not timed.

  total None: not known ahead (lines then give the count and rate only).
  """

  def __init__(self, what: str, total: int | None, *, unit: str = 'items', done: int = 0,
               interval: float | None = None):
    self.what, self.unit = what, unit
    self.total = None if total is None else int(total)
    self.done = self._start = int(done)
    self._interval = INTERVAL_SECONDS if interval is None else interval
    self._t0 = self._last = time.monotonic()
    self._closed = False
    resumed = f', {done} done before' if done else ''
    log(f'{what}: {self.done}/{self._total_text()} {unit}{resumed}')

  def _total_text(self) -> str:
    return '?' if self.total is None else str(self.total)

  def _rate(self, now: float) -> float:
    return (self.done - self._start) / max(now - self._t0, 1e-9)

  def line(self, now: float | None = None) -> str:
    now = time.monotonic() if now is None else now
    rate = self._rate(now)
    if self.total is None:
      return f'{self.what}: {self.done}/? {self.unit}, {rate:.1f} {self.unit}/s'
    percent = 100.0 * self.done / self.total if self.total else 100.0
    text = f'{self.what}: {self.done}/{self.total} {self.unit} ({percent:.1f}%), {rate:.1f} {self.unit}/s'
    if self.done < self.total and rate > 0:
      text += f', ETA {format_seconds((self.total - self.done) / rate)}'
    return text

  def update(self, count: int = 1) -> None:
    self.done += count
    now = time.monotonic()
    if now - self._last >= self._interval and (self.total is None or self.done < self.total):
      self._last = now
      log(self.line(now))

  def close(self) -> None:
    """The last line: where it stopped and the time taken (written once)."""
    if self._closed:
      return
    self._closed = True
    now = time.monotonic()
    log(f'{self.line(now)}, took {format_seconds(now - self._t0)}')

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def iterate(iterable, what: str, total: int | None, *, unit: str = 'items', count=None):
  """Yields from `iterable`, counting each item (or `count(item)` of them) towards `total`."""
  with Progress(what, total, unit=unit) as bar:
    for item in iterable:
      yield item
      bar.update(1 if count is None else count(item))
