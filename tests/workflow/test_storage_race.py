"""Processes that open the same new database at once all get a working storage."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import optuna

from optuna_kmtpe.workflow._storage import open_storage


def _open(
    url: str, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue
) -> None:
    barrier.wait()
    try:
        storage = open_storage(url, create=True)
        optuna.create_study(storage=storage, study_name="race", load_if_exists=True)
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent and asserted there
        queue.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_sqlite_schema_at_once_all_succeed(tmp_path: Path) -> None:
    # A worker started beside `kmtpe search`, or a monitor polling a run that has just begun,
    # races the search to create the schema (tables, then the alembic version row).
    context = multiprocessing.get_context("fork")
    processes_per_database, databases = 4, 6
    outcomes: list[str] = []
    for index in range(databases):
        url = f"sqlite:///{tmp_path / f'race{index}.db'}"
        barrier = context.Barrier(processes_per_database)
        queue = context.Queue()
        workers = [
            context.Process(target=_open, args=(url, barrier, queue))
            for _ in range(processes_per_database)
        ]
        for worker in workers:
            worker.start()
        outcomes += [queue.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
    assert [o for o in outcomes if o != "ok"] == []
