"""A module-scoped fixture: the database is built once per worker for this module.

Each test runs inside a savepoint that is rolled back, so the tests do not depend on
one another and may run in any worker, in any order.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest

ROWS = [
    ("ada", "admin", 120),
    ("grace", "admin", 95),
    ("linus", "user", 40),
    ("guido", "user", 60),
    ("barbara", "user", 75),
]


@pytest.fixture(scope="module")
def database() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    time.sleep(0.5)  # stands for running the migrations of a real database
    connection.execute("CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT, score INTEGER)")
    connection.executemany("INSERT INTO users VALUES (?, ?, ?)", ROWS)
    yield connection
    connection.close()


@pytest.fixture
def db(database: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    database.execute("SAVEPOINT test")
    yield database
    database.execute("ROLLBACK TO test")
    database.execute("RELEASE test")


def query(db: sqlite3.Connection, sql: str, *params: object) -> list[tuple[object, ...]]:
    time.sleep(0.1)  # stands for a round trip to the server
    return db.execute(sql, params).fetchall()


def test_all_rows_present(db):
    assert query(db, "SELECT count(*) FROM users") == [(5,)]


@pytest.mark.parametrize(("role", "count"), [("admin", 2), ("user", 3), ("guest", 0)])
def test_count_by_role(db, role, count):
    assert query(db, "SELECT count(*) FROM users WHERE role = ?", role) == [(count,)]


def test_insert_is_rolled_back_after_the_test(db):
    db.execute("INSERT INTO users VALUES ('ken', 'user', 10)")
    assert query(db, "SELECT count(*) FROM users") == [(6,)]


def test_delete_is_rolled_back_after_the_test(db):
    db.execute("DELETE FROM users WHERE role = 'user'")
    assert query(db, "SELECT count(*) FROM users") == [(2,)]


def test_top_scorer(db):
    assert query(db, "SELECT name FROM users ORDER BY score DESC LIMIT 1") == [("ada",)]


def test_average_score(db):
    ((average,),) = query(db, "SELECT avg(score) FROM users")
    assert average == pytest.approx(78.0)
