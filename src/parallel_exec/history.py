"""The timing history: what the plugin remembers between runs, in one SQLite file.

Per test: how often it ran, a recency-weighted mean and variance of its duration (setup
+ call + teardown), its last duration and outcome, when it was last seen, and how often
it was flaky.  Per run: the learning-outcome record.  Only the controller writes, once,
at the end of a run, in one transaction.

The store degrades instead of failing, as pytest's cache does: a file that is not a
valid store is moved aside (never deleted) with one warning and the run continues with
an empty history; a store that stays locked by a concurrent run past the busy timeout
is skipped with a warning.  Two runs writing at once serialize on SQLite's write lock
(WAL mode), and each update is computed inside the database (``ON CONFLICT DO UPDATE``),
so neither loses the other's rows.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HistoryError, HistoryUnavailable

SCHEMA_VERSION = 1
#: Weight of the newest duration in the recency-weighted mean and variance.
ALPHA = 0.3
BUSY_TIMEOUT_SECONDS = 5.0
#: The estimate for a test when nothing at all is known (seconds).
DEFAULT_ESTIMATE = 0.05

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tests (
    nodeid TEXT PRIMARY KEY,
    runs INTEGER NOT NULL,
    mean REAL NOT NULL,
    var REAL NOT NULL,
    last_duration REAL NOT NULL,
    last_outcome TEXT NOT NULL,
    last_seen REAL NOT NULL,
    flaky_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    finished_at REAL NOT NULL,
    record TEXT NOT NULL
);
"""

#: Forward migrations: ``MIGRATIONS[n]`` takes a store from version n to n + 1.
MIGRATIONS: dict[int, str] = {}


@dataclass(frozen=True)
class TestTiming:
    """What the history knows about one test."""

    __test__ = False  # not a test class, despite the name

    nodeid: str
    runs: int
    mean: float
    var: float
    last_duration: float
    last_outcome: str
    last_seen: float
    flaky_count: int = 0

    @property
    def stdev(self) -> float:
        return math.sqrt(max(self.var, 0.0))


@dataclass(frozen=True)
class TestResult:
    """One finished test, as the history records it."""

    __test__ = False

    nodeid: str
    duration: float
    outcome: str
    flaky: bool = False


class HistoryStore:
    """One SQLite file; open with ``HistoryStore.open(path, warn)``."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, warn: Any = None) -> HistoryStore:
        """Open or create the store; a file that is not a valid store is moved aside."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            raise HistoryError(f"{path} is not a file")
        try:
            return cls._open_checked(path)
        except HistoryUnavailable:
            raise
        except HistoryError as exc:
            if "locked" in str(exc):
                raise
            moved = _move_aside(path)
            if warn is not None:
                warn(
                    f"the timing history {path} is not a valid store ({exc}); moved it to "
                    f"{moved.name} and started an empty history"
                )
            return cls._open_checked(path)

    @classmethod
    def open_strict(cls, path: Path) -> HistoryStore:
        """Open or create the store; a file that is not a valid store is an error."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls._open_checked(path)

    @classmethod
    def _open_checked(cls, path: Path) -> HistoryStore:
        """Open, retrying while another run holds a lock that SQLite's busy handler does
        not wait for (switching a new file to WAL, creating the tables)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                return cls._open_once(path)
            except HistoryError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def _open_once(cls, path: Path) -> HistoryStore:
        try:
            db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(str(exc)) from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                with _transaction(db):
                    _run_script(db, _SCHEMA_V1)
                    db.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            elif "meta" not in tables or "tests" not in tables:
                raise HistoryError("unknown tables: " + ", ".join(sorted(tables)))
            cls._migrate(db)
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise HistoryError(f"locked: {exc}") from exc
            raise HistoryError(str(exc)) from exc
        except sqlite3.DatabaseError as exc:
            db.close()
            raise HistoryError(str(exc)) from exc
        except HistoryError:
            db.close()
            raise
        return cls(path, db)

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise HistoryError("no schema version")
        try:
            version = int(row[0])
        except ValueError:
            raise HistoryError(f"bad schema version {row[0]!r}") from None
        if version > SCHEMA_VERSION:
            raise HistoryUnavailable(
                f"written by a newer parallel_exec (schema {version}, this one reads "
                f"{SCHEMA_VERSION})"
            )
        return version

    @classmethod
    def _migrate(cls, db: sqlite3.Connection) -> None:
        """Bring an older store forward.  Reading the version needs no lock; migrating
        takes the write lock and reads it again (two runs may race to migrate)."""
        if cls._schema_version(db) == SCHEMA_VERSION:
            return
        with _transaction(db):
            version = cls._schema_version(db)
            while version < SCHEMA_VERSION:
                script = MIGRATIONS.get(version)
                if script is None:
                    raise HistoryError(f"no migration from schema version {version}")
                _run_script(db, script)
                version += 1
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ reading

    def timings(self, nodeids: Iterable[str] | None = None) -> dict[str, TestTiming]:
        rows = self._db.execute(
            "SELECT nodeid, runs, mean, var, last_duration, last_outcome, last_seen, "
            "flaky_count FROM tests"
        )
        wanted = set(nodeids) if nodeids is not None else None
        return {r[0]: TestTiming(*r) for r in rows if wanted is None or r[0] in wanted}

    def slowest(self, limit: int = 20) -> list[TestTiming]:
        rows = self._db.execute(
            "SELECT nodeid, runs, mean, var, last_duration, last_outcome, last_seen, "
            "flaky_count FROM tests ORDER BY mean DESC LIMIT ?",
            (limit,),
        )
        return [TestTiming(*r) for r in rows]

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT record FROM runs ORDER BY finished_at DESC LIMIT ?", (limit,)
        )
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ writing

    def record(
        self,
        results: Iterable[TestResult],
        run: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        now: float | None = None,
    ) -> None:
        """Fold one run's results into the history, atomically."""
        now = time.time() if now is None else now
        rows = [(r.nodeid, float(r.duration), r.outcome, now, int(r.flaky)) for r in results]
        try:
            with _transaction(self._db):
                self._db.executemany(
                    """
                    INSERT INTO tests(nodeid, runs, mean, var, last_duration, last_outcome,
                                      last_seen, flaky_count)
                    VALUES (?1, 1, ?2, 0.0, ?2, ?3, ?4, ?5)
                    ON CONFLICT(nodeid) DO UPDATE SET
                        runs = runs + 1,
                        var = (1 - :a) * (var + :a * (?2 - mean) * (?2 - mean)),
                        mean = mean + :a * (?2 - mean),
                        last_duration = ?2,
                        last_outcome = ?3,
                        last_seen = ?4,
                        flaky_count = flaky_count + ?5
                    """.replace(":a", repr(ALPHA)),
                    rows,
                )
                if run is not None and run_id is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO runs(run_id, finished_at, record) VALUES (?,?,?)",
                        (run_id, now, json.dumps(dict(run), sort_keys=True)),
                    )
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"could not write the timing history {self.path}: {exc}") from exc

    def merge_timings(self, timings: Iterable[TestTiming]) -> None:
        """Take rows from another store or export: the newer row of a test wins."""
        try:
            self._merge_timings(timings)
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"could not write the timing history {self.path}: {exc}") from exc

    def _merge_timings(self, timings: Iterable[TestTiming]) -> None:
        rows = [
            (
                t.nodeid,
                t.runs,
                t.mean,
                t.var,
                t.last_duration,
                t.last_outcome,
                t.last_seen,
                t.flaky_count,
            )
            for t in timings
        ]
        with _transaction(self._db):
            self._db.executemany(
                """
                INSERT INTO tests(nodeid, runs, mean, var, last_duration, last_outcome,
                                  last_seen, flaky_count)
                VALUES (?,?,?,?,?,?,?,?)
                ON CONFLICT(nodeid) DO UPDATE SET
                    runs = max(runs, excluded.runs),
                    mean = CASE WHEN excluded.last_seen > last_seen
                           THEN excluded.mean ELSE mean END,
                    var = CASE WHEN excluded.last_seen > last_seen
                          THEN excluded.var ELSE var END,
                    last_duration = CASE WHEN excluded.last_seen > last_seen
                                    THEN excluded.last_duration ELSE last_duration END,
                    last_outcome = CASE WHEN excluded.last_seen > last_seen
                                   THEN excluded.last_outcome ELSE last_outcome END,
                    flaky_count = max(flaky_count, excluded.flaky_count),
                    last_seen = max(last_seen, excluded.last_seen)
                """,
                rows,
            )

    def merge_runs(self, runs: Iterable[tuple[str, float, Mapping[str, Any]]]) -> None:
        try:
            with _transaction(self._db):
                self._db.executemany(
                    "INSERT OR IGNORE INTO runs(run_id, finished_at, record) VALUES (?,?,?)",
                    [(rid, at, json.dumps(dict(rec), sort_keys=True)) for rid, at, rec in runs],
                )
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"could not write the timing history {self.path}: {exc}") from exc

    def all_runs(self) -> list[tuple[str, float, dict[str, Any]]]:
        rows = self._db.execute("SELECT run_id, finished_at, record FROM runs ORDER BY finished_at")
        return [(r[0], r[1], json.loads(r[2])) for r in rows]


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statements one by one: ``executescript`` would commit the open transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _move_aside(path: Path) -> Path:
    """Rename ``path`` (and its WAL files) to a name no other file has; never delete."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    serial = 0
    target = path.with_name(f"{path.name}.invalid-{stamp}-{os.getpid()}")
    while any(Path(str(target) + suffix).exists() for suffix in ("", "-wal", "-shm")):
        serial += 1
        target = path.with_name(f"{path.name}.invalid-{stamp}-{os.getpid()}-{serial}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            source.rename(Path(str(target) + suffix))
    return target


# ---------------------------------------------------------------------- estimates


def estimate_durations(
    nodeids: Iterable[str], known: Mapping[str, TestTiming], default: float = DEFAULT_ESTIMATE
) -> dict[str, float]:
    """A predicted duration for every test, known or not.

    A test the history knows gets its recency-weighted mean.  An unknown test gets the
    median of the known tests in its file, else the median of all known tests in this
    run, else ``default``: a partly known suite still balances.
    """
    nodeids = list(nodeids)
    by_file: dict[str, list[float]] = {}
    everything: list[float] = []
    for nodeid in nodeids:
        timing = known.get(nodeid)
        if timing is not None:
            by_file.setdefault(nodeid.split("::", 1)[0], []).append(timing.mean)
            everything.append(timing.mean)
    suite_median = statistics.median(everything) if everything else default
    file_median = {f: statistics.median(v) for f, v in by_file.items()}
    estimates: dict[str, float] = {}
    for nodeid in nodeids:
        timing = known.get(nodeid)
        if timing is not None:
            estimates[nodeid] = timing.mean
        else:
            estimates[nodeid] = file_median.get(nodeid.split("::", 1)[0], suite_median)
    return estimates
