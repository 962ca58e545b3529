"""How far along a run is, and when it will end: the data of the live status and of
the plain progress lines, from the run-event stream.

``RunProgress`` takes events and answers with plain data and text (no terminal here):
tests done of the total, outcomes so far, what each worker runs and since when, which
test is slow, and an ETA:

- with the timing history: the predicted work left (tests not started, plus what a
  running test is still predicted to take), once a few tests have finished scaled by
  the finished tests' actual / predicted durations (``correction``), plus what each
  test not started costs a worker beyond its own duration (``overhead``: the workers'
  wall time since the first test began less the finished tests' corrected
  predictions, per finished test), over the workers running;
- without it: the tests left at the rate so far, and said so.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from . import events

#: A test running longer than this many times its prediction (and ``SLOW_MIN_SECONDS``)
#: is shown as slow.
SLOW_FACTOR = 3.0
SLOW_MIN_SECONDS = 5.0
#: Finished tests with a prediction before the ETA is scaled by how the run does.
CORRECTION_AFTER = 5
#: Bounds of that scaling (a few odd tests must not swing the ETA wildly); what workers
#: spend between tests is measured apart (``RunProgress.overhead``), unbounded.
CORRECTION_BOUNDS = (0.25, 10.0)


def format_duration(seconds: float) -> str:
    """``42s``, ``1m40s``, ``2h05m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, its start given up first (a node id's end
    names the test)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    return "…" + text[len(text) - width + 1 :]


@dataclass(frozen=True)
class Estimate:
    """Seconds left (None: not known yet) and from what: ``history`` or ``rate``."""

    seconds: float | None
    basis: str


@dataclass
class Running:
    nodeid: str
    #: When it started (``time.time()``).
    since: float


class RunProgress:
    """Consumer of the run-event stream; ``clock`` is ``time.time`` (events carry the
    workers' wall clock)."""

    description = "the run's progress"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        self.total = 0
        self.done = 0
        self.outcomes: Counter[str] = Counter()
        #: The history's mean duration of the tests it knows (from ``RunPlanned``).
        self.predictions: dict[str, float] = {}
        #: Workers in the order they started, and what each runs (None: idle).
        self.workers: dict[str, Running | None] = {}
        self._finished: set[str] = set()
        self._actual_sum = 0.0
        self._predicted_sum = 0.0
        self._corrected = 0
        #: When the first test began, and the predicted work of the finished tests.
        self._first_start: float | None = None
        self._predicted_done = 0.0
        self._nodeids: tuple[str, ...] = ()
        self._typical = 0.0
        self._work_left = 0.0

    # ------------------------------------------------------------ events

    def __call__(self, event: events.RunEvent) -> None:
        if isinstance(event, events.RunStarted):
            self.started = event.started_at
        elif isinstance(event, events.RunPlanned):
            self.predictions.update({k: v[0] for k, v in event.predictions.items()})
            self._plan_work()
        elif isinstance(event, events.CollectionFinished):
            self.total = len(event.nodeids)
            self._nodeids = event.nodeids
            self._plan_work()
        elif isinstance(event, events.WorkerStarted):
            self.workers.setdefault(event.worker_id, None)
        elif isinstance(event, events.TestStarted):
            self.workers[event.worker_id] = Running(event.nodeid, event.started_at)
            if self._first_start is None or event.started_at < self._first_start:
                self._first_start = event.started_at
        elif isinstance(event, events.TestFinished):
            self._test_finished(event)
        elif isinstance(event, (events.WorkerCrashed, events.WorkerFinished)):
            self.workers.pop(event.worker_id, None)

    def _test_finished(self, event: events.TestFinished) -> None:
        running = self.workers.get(event.worker_id)
        if running is not None and running.nodeid == event.nodeid:
            self.workers[event.worker_id] = None
        if event.nodeid in self._finished:
            return
        self._finished.add(event.nodeid)
        self.done += 1
        self._work_left -= self._predicted(event.nodeid)
        self._predicted_done += self._predicted(event.nodeid)
        self.outcomes[event.outcome] += 1
        predicted = self.predictions.get(event.nodeid)
        if predicted is not None and event.origin == "worker":
            self._actual_sum += event.duration
            self._predicted_sum += predicted
            self._corrected += 1

    # ------------------------------------------------------------ figures

    @property
    def failed(self) -> int:
        return self.outcomes["failed"] + self.outcomes["error"]

    def elapsed(self, now: float | None = None) -> float:
        return max(0.0, (self._clock() if now is None else now) - self.started)

    def correction(self) -> float:
        """How the tests do against their predictions (1.0 until enough tests
        finished): actual / predicted durations, bounded."""
        if self._corrected < CORRECTION_AFTER or self._predicted_sum <= 0:
            return 1.0
        low, high = CORRECTION_BOUNDS
        return min(high, max(low, self._actual_sum / self._predicted_sum))

    def overhead(self, now: float | None = None) -> float:
        """Seconds of a worker's time each test costs beyond its own duration (sending
        it, reporting it, set-up the history does not see), measured since the first
        test: workers' wall time less the finished tests' corrected predictions, per
        finished test.  It is what the ETA of a suite of millisecond tests is made of."""
        if self._corrected < CORRECTION_AFTER or self._first_start is None or not self.done:
            return 0.0
        now = self._clock() if now is None else now
        wall = max(0.0, now - self._first_start) * max(1, len(self.workers))
        return max(0.0, wall - self._predicted_done * self.correction()) / self.done

    def _predicted(self, nodeid: str) -> float:
        return self.predictions.get(nodeid, self._typical)

    def _plan_work(self) -> None:
        """The predicted work of the tests not finished (a test the history does not know
        counts as a typical one), kept up to date as tests finish."""
        known = list(self.predictions.values())
        self._typical = sum(known) / len(known) if known else 0.0
        self._work_left = sum(self._predicted(n) for n in self._nodeids if n not in self._finished)

    def eta(self, now: float | None = None) -> Estimate:
        now = self._clock() if now is None else now
        left = self.total - self.done
        basis = "history" if self.predictions else "rate"
        if self.total and left <= 0:
            return Estimate(0.0, basis)
        if self.predictions and self.total:
            work = self._work_left
            waiting = left
            for run in self.workers.values():
                if run is not None and run.nodeid not in self._finished:
                    predicted = self._predicted(run.nodeid)
                    work -= predicted - max(0.0, predicted - (now - run.since))
                    waiting -= 1
            active = max(1, len(self.workers))
            cost = max(0.0, work) * self.correction() + max(0, waiting) * self.overhead(now)
            return Estimate(cost / active, basis)
        elapsed = self.elapsed(now)
        if self.done == 0 or elapsed <= 0:
            return Estimate(None, basis)
        return Estimate(left / (self.done / elapsed), basis)

    def slow(self, run: Running, now: float) -> bool:
        predicted = self.predictions.get(run.nodeid)
        if predicted is None:
            return False
        seconds = now - run.since
        return seconds > SLOW_MIN_SECONDS and seconds > SLOW_FACTOR * predicted

    # ------------------------------------------------------------ text

    def eta_text(self, now: float) -> str:
        estimate = self.eta(now)
        if estimate.seconds is None:
            return "ETA --"
        left = self.total - self.done
        # Work is left: under a second is not "0s", which reads as finished.
        shown = "<1s" if left > 0 and estimate.seconds < 1 else format_duration(estimate.seconds)
        text = f"ETA {shown}"
        return text if estimate.basis == "history" else text + " (from the rate so far)"

    def plain_line(self, now: float | None = None) -> str:
        """``parallel_exec: 812/2000 done, 3 failed, ETA 1m40s``: one line for logs."""
        now = self._clock() if now is None else now
        return (
            f"parallel_exec: {self.done}/{self.total} done, {self.failed} failed, "
            f"{self.eta_text(now)}"
        )

    def status_lines(self, now: float, width: int, max_workers: int = 16) -> list[str]:
        """The live status: tests done with a bar, elapsed and ETA; the outcomes so
        far; one line per worker (its test, how long it has run, SLOW)."""
        width = max(20, width)
        share = self.done / self.total if self.total else 0.0
        head = f"{self.done}/{self.total}"
        tail = (
            f" {int(share * 100):3d}%  {format_duration(self.elapsed(now))}  {self.eta_text(now)}"
        )
        bar_width = min(40, width - len(head) - len(tail) - 3)
        if bar_width >= 5:
            filled = int(share * bar_width)
            head += " [" + "#" * filled + "-" * (bar_width - filled) + "]"
        counts = [
            f"{self.outcomes['passed']} passed",
            f"{self.failed} failed",
            f"{self.outcomes['skipped']} skipped",
        ] + [f"{self.outcomes[k]} {k}" for k in ("xfailed", "xpassed") if self.outcomes[k]]
        lines = [fit(head + tail, width), fit(", ".join(counts), width)]
        shown = list(self.workers.items())[:max_workers]
        for worker_id, run in shown:
            if run is None:
                lines.append(fit(f"{worker_id:>5}  idle", width))
                continue
            seconds = max(0.0, now - run.since)
            suffix = f" {format_duration(seconds)}" + (" SLOW" if self.slow(run, now) else "")
            room = max(0, width - 7 - len(suffix))
            lines.append(
                fit(f"{worker_id:>5}  " + fit(run.nodeid, room).ljust(room) + suffix, width)
            )
        hidden = len(self.workers) - len(shown)
        if hidden > 0:
            lines.append(fit(f"       ... and {hidden} more workers", width))
        return lines
