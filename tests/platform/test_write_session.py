"""`Database.write_session`: read-modify-write transactions that take turns."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from pujiang.platform.db import Database


def _sqlite(tmp_path: Path, busy_ms: int) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")

    def short_busy_timeout(connection: Any, _record: Any) -> None:
        connection.execute(f"PRAGMA busy_timeout={busy_ms}")

    event.listen(db.engine, "connect", short_busy_timeout)
    with db.session() as session:
        session.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        session.execute(text("INSERT INTO counter VALUES (0)"))
    return db


def test_concurrent_write_sessions_of_one_process_queue_instead_of_failing(
    tmp_path: Path,
) -> None:
    """Eight threads read, wait and write back one counter. Each holds the lock far longer
    than SQLite's busy timeout here (20 ms): none may fail with "database is locked", and
    no increment may be lost."""
    db = _sqlite(tmp_path, busy_ms=20)
    failures: list[BaseException] = []

    def increment() -> None:
        try:
            with db.write_session() as session:
                n = session.execute(text("SELECT n FROM counter")).scalar_one()
                time.sleep(0.05)
                session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        except BaseException as exc:  # handed to the test below
            failures.append(exc)

    threads = [threading.Thread(target=increment) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with db.session() as session:
        total = session.execute(text("SELECT n FROM counter")).scalar_one()
    db.dispose()
    assert failures == []
    assert total == 8


def test_a_write_session_inside_another_is_refused_at_once(tmp_path: Path) -> None:
    db = _sqlite(tmp_path, busy_ms=20)
    with db.write_session(), pytest.raises(RuntimeError, match="inside another"):  # noqa: SIM117
        with db.write_session():
            pass  # pragma: no cover - never entered
    with db.write_session() as session:  # the refusal left nothing held
        session.execute(text("UPDATE counter SET n = 1"))
    db.dispose()


def test_a_failed_write_session_rolls_back_and_frees_the_writer(tmp_path: Path) -> None:
    db = _sqlite(tmp_path, busy_ms=20)

    def fail_half_way() -> None:
        with db.write_session() as session:
            session.execute(text("UPDATE counter SET n = 5"))
            raise ValueError("the request failed half way")

    with pytest.raises(ValueError, match="half way"):
        fail_half_way()
    with db.write_session() as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 0
