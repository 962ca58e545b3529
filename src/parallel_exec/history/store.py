"""The timing history: what the plugin remembers between runs, in one SQLite file.

Per test: how often it ran, a recency-weighted mean and variance of its duration (setup
+ call + teardown), its last duration and outcome, when it was last seen, and how often
it was flaky.  Per run: the learning-outcome record.  Only the controller writes, once,
at the end of a run, in one transaction.

The store degrades instead of failing, as pytest's cache does: a file that is not a
valid store (``PRAGMA quick_check`` at open, or the first query that finds it damaged)
is moved aside (never deleted) with one warning and the run continues with an empty
history; one that cannot be moved (a read-only file system) is left as it is and
skipped.  A valid store that cannot be written (a read-only file, directory or file
system, such as a restored CI cache) is opened read-only: read and planned from, never
written.  A store that stays locked by a concurrent run past the busy timeout is
skipped with a warning.  Two runs writing at once serialize on SQLite's write lock
(WAL mode), and each update is computed inside the database (``ON CONFLICT DO UPDATE``),
so neither loses the other's rows.

Every ``sqlite3.Error`` the store meets, when opening, reading or writing, leaves it as
a ``HistoryError``: its callers warn and go on, the history never fails a run.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HistoryError, HistoryUnavailable

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
#: ``PRAGMA quick_check`` stops after this many findings (one is enough to know).
QUICK_CHECK_FINDINGS = 3


class _NotWritable(HistoryUnavailable):
    """SQLite cannot write the store (a read-only file, directory or file system):
    ``open`` then reads it read-only instead of taking it for an invalid store."""


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

    def __init__(self, path: Path, connection: sqlite3.Connection, read_only: bool = False) -> None:
        self.path = path
        self._db = connection
        #: Opened read-only (``mode=ro``, or ``immutable`` when SQLite cannot even set up
        #: its WAL index): readable, and every write raises ``HistoryUnavailable``.
        self.read_only = read_only
        #: Opened by ``open``: a write that finds the file damaged moves it aside.
        self._degrades = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, warn: Any = None) -> HistoryStore:
        """Open or create the store, degrading instead of failing.

        A file that is not a valid store is moved aside (one warning) and an empty store
        takes its place; one that cannot be moved is left as it is (``HistoryUnavailable``).
        A valid store that cannot be written is opened read-only (one warning).
        """
        if path.exists() and not path.is_file():
            raise HistoryError(f"{path} is not a file")
        _make_parent(path)
        store: HistoryStore | None = None
        if _writable(path):
            try:
                store = cls._open_checked(path, read_only=False)
            except _NotWritable:
                pass  # writable as far as the permissions go, not for SQLite: read-only
            except HistoryUnavailable:
                raise
            except HistoryError as exc:
                if _is_locked(exc):
                    raise
                store = cls._replace_invalid(path, exc, warn)
        if store is not None:
            store._degrades = True
            return store
        store = cls._open_read_only(path)
        if warn is not None:
            warn(
                f"the timing history {path} is read-only: this run plans from it but "
                f"does not record its timings in it"
            )
        return store

    @classmethod
    def _replace_invalid(cls, path: Path, invalid: HistoryError, warn: Any) -> HistoryStore:
        """Move an invalid store aside (one warning) and create an empty one in its place."""
        try:
            moved = _move_aside(path)
        except OSError as exc:
            raise HistoryUnavailable(
                f"not a valid store: {invalid}; it cannot be moved aside ({exc.strerror}), "
                f"so it was left as it is"
            ) from exc
        if warn is not None:
            warn(
                f"the timing history {path} is not a valid store ({invalid}); moved it to "
                f"{moved.name} and started an empty history"
            )
        return cls._open_checked(path, read_only=False)

    @classmethod
    def open_strict(cls, path: Path, write: bool = True) -> HistoryStore:
        """Open or create the store; a file that is not a valid store is an error.

        With ``write=False`` (only reading it) a store that cannot be written is opened
        read-only instead of being an error.
        """
        _make_parent(path)
        if _writable(path):
            try:
                return cls._open_checked(path, read_only=False)
            except _NotWritable:
                if write:
                    raise
        elif write:
            raise HistoryUnavailable("it is read-only")
        return cls._open_read_only(path)

    @classmethod
    def _open_read_only(cls, path: Path) -> HistoryStore:
        """An existing store that cannot be written, read-only; never moved, never
        migrated: anything that stops reading it is ``HistoryUnavailable``."""
        if not path.exists():
            raise HistoryUnavailable("there is none, and its directory is read-only")
        try:
            return cls._open_checked(path, read_only=True)
        except HistoryUnavailable:
            raise
        except HistoryError as exc:
            if _is_locked(exc):
                raise
            raise HistoryUnavailable(
                f"not a valid store: {exc}; it is read-only, so it was left as it is"
            ) from exc

    @classmethod
    def _open_checked(cls, path: Path, read_only: bool) -> HistoryStore:
        """Open, retrying while another run holds a lock that SQLite's busy handler does
        not wait for (switching a new file to WAL, creating the tables)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                return cls._open_once(path, read_only)
            except HistoryError as exc:
                if not _is_locked(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def _open_once(cls, path: Path, read_only: bool) -> HistoryStore:
        db: sqlite3.Connection | None = None
        try:
            db = _connect(path, read_only)
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            _check_integrity(db)
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and read_only:
                raise HistoryUnavailable("it is empty, and read-only")
            if not tables:
                with _transaction(db):
                    _run_script(db, _SCHEMA_V1)
                    db.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            elif "meta" not in tables or "tests" not in tables:
                raise HistoryError("unknown tables: " + ", ".join(sorted(tables)))
            if not read_only:
                cls._migrate(db)
            elif cls._schema_version(db) != SCHEMA_VERSION:
                raise HistoryUnavailable(
                    "written by an older parallel_exec; a read-only store cannot be migrated"
                )
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if _is_busy(exc):
                raise HistoryError(f"locked: {exc}") from exc
            if _is_read_only_error(exc) and not read_only:
                raise _NotWritable(str(exc)) from exc
            if _is_read_only_error(exc):
                raise HistoryUnavailable(f"it cannot be opened read-only: {exc}") from exc
            raise HistoryError(str(exc)) from exc
        except HistoryError:
            if db is not None:
                db.close()
            raise
        return cls(path, db, read_only)

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

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A query (and the iteration of its rows) whose ``sqlite3.Error`` is a
        ``HistoryError``: a damage ``quick_check`` missed surfaces here, not as sqlite3's."""
        try:
            yield
        except sqlite3.Error as exc:
            raise HistoryError(f"could not read the timing history {self.path}: {exc}") from exc

    def timings(self, nodeids: Iterable[str] | None = None) -> dict[str, TestTiming]:
        wanted = set(nodeids) if nodeids is not None else None
        with self._reading():
            rows = self._db.execute(
                "SELECT nodeid, runs, mean, var, last_duration, last_outcome, last_seen, "
                "flaky_count FROM tests"
            )
            return {r[0]: TestTiming(*r) for r in rows if wanted is None or r[0] in wanted}

    def slowest(self, limit: int = 20) -> list[TestTiming]:
        with self._reading():
            rows = self._db.execute(
                "SELECT nodeid, runs, mean, var, last_duration, last_outcome, last_seen, "
                "flaky_count FROM tests ORDER BY mean DESC LIMIT ?",
                (limit,),
            )
            return [TestTiming(*r) for r in rows]

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        with self._reading():
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
        self._check_writable()
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
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc

    def _check_writable(self) -> None:
        if self.read_only:
            raise HistoryUnavailable(f"the timing history {self.path} is read-only")

    def _write_failed(self, exc: sqlite3.Error) -> HistoryError:
        """The ``HistoryError`` for a failed write.  A store opened by ``open`` that the
        write finds damaged is closed and moved aside: the next run starts an empty one."""
        failed = f"could not write the timing history {self.path}: {exc}"
        if not self._degrades or not _is_damage(exc):
            return HistoryError(failed)
        self._db.close()  # first: SQLite must not touch the -wal and -shm once they moved
        try:
            moved = _move_aside(self.path)
        except OSError as move_error:
            return HistoryError(f"{failed}; it cannot be moved aside ({move_error.strerror})")
        return HistoryError(
            f"{failed}; moved it to {moved.name}, the next run starts an empty history"
        )

    def merge_timings(self, timings: Iterable[TestTiming]) -> None:
        """Take rows from another store or export: the newer row of a test wins."""
        self._check_writable()
        try:
            self._merge_timings(timings)
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc

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
        self._check_writable()
        try:
            with _transaction(self._db):
                self._db.executemany(
                    "INSERT OR IGNORE INTO runs(run_id, finished_at, record) VALUES (?,?,?)",
                    [(rid, at, json.dumps(dict(rec), sort_keys=True)) for rid, at, rec in runs],
                )
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc

    def all_runs(self) -> list[tuple[str, float, dict[str, Any]]]:
        with self._reading():
            rows = self._db.execute(
                "SELECT run_id, finished_at, record FROM runs ORDER BY finished_at"
            )
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
        # SQLite has already rolled back after some errors (a damaged page, a full
        # disk); a ROLLBACK then would replace the error that says what happened.
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    """A connection to the store.  Read-only: ``mode=ro``; if SQLite cannot open the file
    that way (a WAL store whose ``-shm`` cannot be created in a read-only directory),
    ``immutable=1``, which reads the file without any locking or WAL index (and without
    what a left-over ``-wal`` holds: the store as of its last checkpoint)."""
    if not read_only:
        return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    uri = path.absolute().as_uri()
    db = sqlite3.connect(
        f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
    )
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens lazily
        return db
    except sqlite3.Error as exc:
        db.close()
        if not _is_read_only_error(exc):
            raise
    return sqlite3.connect(
        f"{uri}?immutable=1", uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
    )


def _check_integrity(db: sqlite3.Connection) -> None:
    """``PRAGMA quick_check``: a damaged page is found at open, not by the query that
    happens to read it (which may be the write at the end of the run)."""
    findings = [str(row[0]) for row in db.execute(f"PRAGMA quick_check({QUICK_CHECK_FINDINGS})")]
    if findings == ["ok"]:
        return
    lines = [
        line.strip()
        for finding in findings
        for line in finding.splitlines()
        if line.strip() and not line.startswith("***")
    ]
    lines = lines or findings
    more = f", and {len(lines) - 1} more problems" if len(lines) > 1 else ""
    raise HistoryError(f"damaged: {lines[0]}{more}")


def _error_name(exc: sqlite3.Error) -> str:
    """SQLite's error code name (``SQLITE_CORRUPT``...); Python 3.10 has none: empty."""
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _is_busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _is_locked(exc: HistoryError) -> bool:
    """The store is held by another run (``_open_once`` says ``locked: ...``)."""
    return str(exc).startswith("locked")


def _is_read_only_error(exc: sqlite3.Error) -> bool:
    """SQLite cannot write the file, or cannot open it the way it asked to."""
    name = _error_name(exc)
    if name:
        return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))
    text = str(exc)
    return "readonly database" in text or "unable to open database file" in text


def _is_damage(exc: sqlite3.Error) -> bool:
    """The file itself is bad (a damaged page, not a database), not the circumstances."""
    name = _error_name(exc)
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return type(exc) is sqlite3.DatabaseError


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryUnavailable(f"its directory cannot be created: {exc}") from exc


def _writable(path: Path) -> bool:
    """Whether the store can be written, as far as the file system says: the file (if
    any) and its directory (where the WAL files and a moved-aside store go).  A
    read-only file system says no to everybody, root included."""
    if not os.access(path.parent, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


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
