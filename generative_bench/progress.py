"""Progress of long work (reference extraction, sampling, NLL), the same on a terminal and in a log.

On a terminal a tqdm bar shows the count, the rate and the time left; otherwise (CI, a log file,
a sweep worker) one log line every ``interval`` seconds (none for a pass shorter than that, and a
last one when a logged pass ends) says the same, e.g.
``reference features (cifar10-jpeg train): 1,200/50,000 images (2%), 26.8 images/s, ETA 30 min``,
so a long pass never runs silent. After the first ``warn_after`` seconds, a pass whose estimated
duration is longer than ``long_after`` seconds logs once how long it will take and what would be
faster (``advice``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("generative_bench")


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 40 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Counts ``update(n)`` calls towards ``total``; a bar on a terminal, log lines otherwise."""

    def __init__(self, total: int, desc: str, unit: str = "images", interval: float = 5.0,
                 enabled: bool = True, advice: str = "", long_after: float = 120.0, warn_after: float = 3.0,
                 bar: bool | None = None, clock: Any = time.monotonic):
        self.total, self.desc, self.unit, self.interval = int(total), desc, unit, float(interval)
        self.enabled, self.advice, self.long_after, self.warn_after = enabled, advice, float(long_after), float(warn_after)
        self.clock = clock
        self.done = 0
        self.start = self.last = clock()
        self.logged = False  # a pass shorter than one interval stays silent
        self.warned = False
        self.bar = None
        if enabled and (on_terminal() if bar is None else bar):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit=unit.rstrip("s") or unit, leave=False)

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        rate, eta = self.rate(), self.eta()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        tail = f", {rate:.1f} {self.unit}/s" + (f", ETA {duration(eta)}" if eta is not None else "")
        return f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}{share}{tail}"

    def update(self, n: int) -> None:
        self.done += int(n)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(int(n))
        now = self.clock()
        eta = self.eta()
        if not self.warned and now - self.start >= self.warn_after and eta is not None and eta > self.long_after:
            self.warned = True
            log.warning("%s: about %s for %s %s at %.1f %s/s%s", self.desc, duration(eta + now - self.start),
                        f"{self.total:,}", self.unit, self.rate(), self.unit, f"; {self.advice}" if self.advice else "")
        if self.bar is None and (now - self.last >= self.interval or (self.logged and self.done >= self.total)):
            self.last, self.logged = now, True
            log.info("%s", self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Progress", "duration", "on_terminal"]
