"""Progress lines for logs: what tqdm's bar shows, as plain lines where there is no bar.

tqdm turns itself off when its stream is not a terminal (``disable=None``), so a run
whose output goes to a file would say nothing until the epoch ends; an epoch of a big
data set can take an hour. ``LogProgress`` prints a line at least every ``every_s``
seconds or every tenth of the epoch, whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

TENTHS = 10


class LogProgress:
    """Prints ``epoch e/E batch i/n | loss L (running mean) | S samples/s`` now and then.

    ``update`` is called after every batch; silent when ``enabled`` is false (a bar is
    showing, or this is not the main process)."""

    def __init__(
        self,
        epoch: str,
        total: int,
        done: int,
        say: Callable[[str], None],
        enabled: bool,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.epoch, self.total, self.done, self.say = epoch, total, done, say
        self.enabled, self.every_s, self.clock = enabled, every_s, clock
        self.loss_sum, self.batches, self.samples = 0.0, 0, 0  # since the epoch (re)started
        self.last_time, self.last_samples = clock(), 0

    def update(self, loss: float, samples: int) -> None:
        """One more batch of ``samples`` trained, with this mean loss."""
        self.done, self.batches = self.done + 1, self.batches + 1
        self.loss_sum, self.samples = self.loss_sum + loss, self.samples + samples
        if not self.enabled or self.done >= self.total:  # the epoch line comes next
            return
        now = self.clock()
        tenth = self.done * TENTHS // self.total > (self.done - 1) * TENTHS // self.total
        if tenth or now - self.last_time >= self.every_s:
            rate = (self.samples - self.last_samples) / max(now - self.last_time, 1e-9)
            self.say(
                f"{self.epoch} batch {self.done}/{self.total} | "
                f"loss {self.loss_sum / self.batches:.4g} | {rate:.0f} samples/s"
            )
            self.last_time, self.last_samples = now, self.samples
