"""TR-2 recording from training loops: buffered, incremental, crash-safe, concurrent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from pg_support import both_backends_db_path, other_connection  # noqa: F401  (each database test on SQLite and PostgreSQL)
from training_support import make_dataset, usage_invariants

from sushitui.store import ItemStats, RunItemUsage, TrainingRun
from sushitui.training import UnknownItemError, create_run, open_run
from sushitui.training.stats import item_usage_stats


@pytest.fixture
def ds(db, tmp_path):
    return make_dataset(tmp_path / "data", 40, subtypes=("main", "alt"))


def item_ids(db) -> list[int]:
    return [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]


def test_record_buffers_until_flush_then_writes_per_run_and_per_item_usage(db, ds):
    create_run("r", ds.name)
    ids = item_ids(db)
    run = open_run("r", flush_every=1000, flush_seconds=3600)
    run.record(ids[:3], 1, 0)
    run.record([ids[0]], 2, 7)
    assert run.pending_events == 4
    assert RunItemUsage.select().count() == 0  # nothing written before the flush
    assert run.flush() == 4
    u = RunItemUsage.get(RunItemUsage.run == run.id, RunItemUsage.item == ids[0])
    assert (u.times_seen, u.first_epoch, u.first_step, u.last_epoch, u.last_step) == (2, 1, 0, 2, 7)
    row = TrainingRun.get_by_id(run.id)
    assert (row.samples_seen, row.epochs_done, row.steps_done, row.status) == (4, 2, 7, "running")
    run.close()


def test_flush_happens_by_count(db, ds):
    create_run("r", ds.name)
    ids = item_ids(db)
    run = open_run("r", flush_every=10, flush_seconds=3600)
    for step in range(7):
        run.record(ids[:2], 1, step)
    assert run.flushed_events == 10 and run.pending_events == 4
    run.close()
    assert usage_invariants(db) == (14, 14, 14)


def test_per_item_totals_and_variance_are_kept_incrementally_over_runs(db, ds):
    ids = item_ids(db)
    per_run = [3, 5, 10]  # times item 0 is seen in each of three runs, over several flushes
    for k, n in enumerate(per_run):
        create_run(f"r{k}", ds.name)
        with open_run(f"r{k}", flush_every=2) as run:
            for step in range(n):
                run.record([ids[0]], 1, step)
    s = item_usage_stats(ids[0])
    assert s["total_seen"] == 18 and s["runs_participated"] == 3
    mean = sum(per_run) / 3
    assert s["variance_per_run"] == pytest.approx(sum((x - mean) ** 2 for x in per_run) / 3)
    assert s["first_trained_at"] <= s["last_trained_at"]
    assert ItemStats.get_by_id(ids[0]).usage_sumsq == sum(x * x for x in per_run)


def test_unknown_item_ids_are_refused_and_nothing_of_the_call_is_recorded(db, ds, tmp_path):
    other = make_dataset(tmp_path / "other", 2, name="other", files=False)
    foreign = [r[0] for r in db.execute_sql("SELECT id FROM item WHERE dataset_id = ?", (other.id,))]
    create_run("r", ds.name)
    with open_run("r") as run:
        with pytest.raises(UnknownItemError, match="not items of dataset"):
            run.record([item_ids(db)[0], foreign[0]], 1, 0)
        assert run.pending_events == 0


@pytest.mark.parametrize(
    "exc, status", [(None, "completed"), (RuntimeError, "failed"), (KeyboardInterrupt, "cancelled")]
)
def test_leaving_the_with_block_flushes_and_sets_the_status(db, ds, exc, status):
    create_run("r", ds.name)
    ids = item_ids(db)
    try:
        with open_run("r", flush_every=10_000, flush_seconds=3600) as run:
            assert TrainingRun.get_by_id(run.id).status == "running"
            run.record(ids[:5], 1, 0)
            if exc:
                raise exc()
    except (RuntimeError, KeyboardInterrupt):
        pass
    row = TrainingRun.get(TrainingRun.name == "r")
    assert row.status == status and row.samples_seen == 5


def test_sample_epoch_gives_absolute_paths_and_the_runs_caption(db, ds, tmp_path):
    create_run("r", ds.name, caption_type="alt")
    with open_run("r") as run:
        order = run.sample_epoch(1, sampler="random", seed=1)
        assert len(order) == 40 and len({it.id for it in order}) == 40
        assert all(os.path.isabs(it.image) and os.path.exists(it.image) for it in order)
        assert all(it.caption.startswith("alt ") for it in order)
        assert [it.id for it in run.sample_epoch(1, sampler="random", seed=1)] == [it.id for it in order]
        assert [it.id for it in run.sample_epoch(2, sampler="random", seed=1)] != [it.id for it in order]


def test_sample_epoch_balances_against_earlier_runs(db, ds):
    ids = item_ids(db)
    create_run("first", ds.name)
    with open_run("first") as run:
        run.record(ids[:20] * 10, 1, 0)  # half of the items seen 10 times
    create_run("second", ds.name, parent="first")
    with open_run("second") as run:
        order = run.sample_epoch(1, sampler="min-usage", seed=0, history="parent")
        fresh = sum(1 for it in order if it.id not in set(ids[:20]))
        assert fresh > 0.8 * len(order)  # weights 1 vs 1/11
        # this run's own recording does not change its plan (a restarted trainer agrees)
        run.record(order, 1, 0)
        run.flush()
        again = open_run("second").sample_epoch(1, sampler="min-usage", seed=0, history="parent")
        assert [it.id for it in again] == [it.id for it in order]


def _script(body: str) -> str:
    return textwrap.dedent(body)


RECORDER_SCRIPT = _script(
    """
    import sys, time
    import sushitui.training as training
    db_path, run_name, batches, flush_every, offset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    run = training.open_run(run_name, db_path=db_path, flush_every=flush_every, flush_seconds=3600)
    ids = [it.id for it in run.items()]
    step = 0
    while batches < 0 or step < batches:
        run.record([ids[(offset + step * 5 + k) % len(ids)] for k in range(5)], 1 + step // 100, step)
        if run.pending_events == 0:
            print("flushed", run.flushed_events, flush=True)
        step += 1
    run.close()
    print("done", run.flushed_events, flush=True)
    """
)


def _start_recorder(db_path, run_name, batches, flush_every, offset=0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RECORDER_SCRIPT, str(db_path), run_name, str(batches), str(flush_every), str(offset)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_of_a_recording_process_loses_nothing_already_flushed(db, db_path, ds):
    create_run("victim", ds.name)
    proc = _start_recorder(db_path, "victim", -1, 50)  # records forever
    flushed = 0
    deadline = time.monotonic() + 30
    try:
        while flushed < 2000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            flushed = int(line.split()[1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert flushed >= 2000
    con = other_connection(db_path)
    try:
        if isinstance(con, sqlite3.Connection):  # the file's own checks (PostgreSQL keeps no such file)
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        seen = con.execute("SELECT samples_seen FROM training_run WHERE name = 'victim'").fetchone()[0]
    finally:
        con.close()
    assert seen >= flushed  # every flushed batch survived
    assert seen % 50 == 0  # and batches are whole: a flush is all or nothing
    u, s, r = usage_invariants(db)
    assert u == s == r == seen


@pytest.mark.slow
def test_two_recording_processes_and_a_reader_see_consistent_totals(db, db_path, ds):
    create_run("shared", ds.name)
    create_run("own", ds.name)
    batches, flush_every = 400, 40
    writers = [
        _start_recorder(db_path, "shared", batches, flush_every, 0),
        _start_recorder(db_path, "shared", batches, flush_every, 3),
        _start_recorder(db_path, "own", batches, flush_every, 7),
    ]
    snapshots = 0
    deadline = time.monotonic() + 45
    reader = other_connection(db_path, timeout=30)
    try:
        while any(w.poll() is None for w in writers):
            assert time.monotonic() < deadline, "recording processes did not finish in time"
            reader.execute("BEGIN")
            u = reader.execute("SELECT COALESCE(SUM(times_seen), 0) FROM run_item_usage").fetchone()[0]
            s = reader.execute("SELECT COALESCE(SUM(total_seen), 0) FROM item_stats").fetchone()[0]
            r = reader.execute("SELECT COALESCE(SUM(samples_seen), 0) FROM training_run").fetchone()[0]
            reader.execute("COMMIT")
            assert u == s == r, "a reader saw a half-written flush"
            snapshots += 1
            time.sleep(0.01)
    finally:
        reader.close()
    for w in writers:
        _, errors = w.communicate(timeout=10)
        assert w.returncode == 0, errors
    assert snapshots > 3
    total = batches * 5
    assert usage_invariants(db) == (3 * total, 3 * total, 3 * total)
    runs = {r.name: r.samples_seen for r in TrainingRun.select()}
    assert runs == {"shared": 2 * total, "own": total}


def test_events_still_buffered_at_interpreter_exit_are_flushed(db, db_path, ds):
    create_run("r", ds.name)
    code = _script(
        """
        import sys
        import sushitui.training as training
        run = training.open_run("r", db_path=sys.argv[1], flush_every=10**6, flush_seconds=3600)
        run.record([it.id for it in run.items()][:7], 1, 0)
        # no close(), no with-block: the atexit hook must write the buffer
        """
    )
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=True, timeout=30)
    assert TrainingRun.get(TrainingRun.name == "r").samples_seen == 7


def test_events_of_items_removed_from_the_index_are_dropped_and_the_rest_written(db, ds):
    create_run("r", ds.name)
    ids = item_ids(db)
    run = open_run("r", flush_every=10_000, flush_seconds=3600)
    run.record(ids[:6], 1, 0)
    db.execute_sql("DELETE FROM item WHERE id IN (?, ?)", (ids[0], ids[1]))  # e.g. a reindex removed them
    assert run.flush() == 4
    assert run.dropped_events == 2
    run.close()
    assert usage_invariants(db) == (4, 4, 4)


def test_flush_waits_for_another_writer_instead_of_failing(db, db_path, ds):
    import threading

    create_run("r", ds.name)
    ids = item_ids(db)
    run = open_run("r", flush_every=10_000, flush_seconds=3600)
    run.record(ids[:3], 1, 0)  # buffered only
    other = other_connection(db_path)
    other.execute("BEGIN IMMEDIATE")  # another process (the TUI, a CLI command) is writing
    released = threading.Event()

    def release():
        time.sleep(0.5)
        other.execute("COMMIT")
        released.set()

    t = threading.Thread(target=release)
    t.start()
    assert run.flush() == 3  # waits on the busy timeout, then writes
    assert released.is_set()
    run.close()
    t.join()
    other.close()
    assert usage_invariants(db) == (3, 3, 3)


def recomputed_totals(db) -> dict[int, tuple[int, int, int]]:
    """Per-item totals recomputed from the per-run usage (what the incremental rows must equal)."""
    return {
        item: (total, runs, sumsq)
        for item, total, runs, sumsq in db.execute_sql(
            "SELECT item_id, SUM(times_seen), COUNT(*), SUM(times_seen * times_seen) FROM run_item_usage "
            "GROUP BY item_id"
        )
    }


def stored_totals(db) -> dict[int, tuple[int, int, int]]:
    return {
        item: (total, runs, sumsq)
        for item, total, runs, sumsq in db.execute_sql(
            "SELECT item_id, total_seen, runs_participated, usage_sumsq FROM item_stats WHERE runs_participated > 0"
        )
    }


def test_incremental_totals_equal_a_full_recount_after_any_sequence_of_runs(db, ds):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ids = item_ids(db)[:8]
    op = st.one_of(
        st.tuples(st.just("record"), st.integers(0, 2), st.lists(st.sampled_from(ids), min_size=1, max_size=6)),
        st.tuples(st.just("flush"), st.integers(0, 2), st.just([])),
        st.tuples(st.just("remove"), st.integers(0, 2), st.just([])),
    )

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(op, max_size=25))
    def check(ops):
        db.execute_sql("DELETE FROM training_run")
        db.execute_sql("DELETE FROM item_stats")
        runs = {}

        def get(k):
            if k not in runs:
                create_run(f"h{k}", ds.name)
                runs[k] = open_run(f"h{k}", flush_every=4, flush_seconds=3600)
            return runs[k]

        for kind, k, items in ops:
            if kind == "record":
                get(k).record(items, 1, 0)
            elif kind == "flush":
                get(k).flush()
            elif k in runs:
                runs.pop(k).close()
                from sushitui.training import remove_run

                remove_run(f"h{k}")
        for run in runs.values():
            run.close()
        assert stored_totals(db) == recomputed_totals(db)
        u, s, r = usage_invariants(db)
        assert u == s == r

    check()


def test_record_takes_numpy_ids_and_is_safe_from_several_threads(db, ds):
    import threading

    import numpy as np

    create_run("r", ds.name)
    ids = np.array(item_ids(db), dtype=np.int64)
    with open_run("r", flush_every=50, flush_seconds=3600) as run:

        def worker(offset):
            for step in range(200):
                run.record(ids[(offset + step) % 40 : (offset + step) % 40 + 1], 1, step)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(UnknownItemError):
            run.record([1.5], 1, 0)
    assert usage_invariants(db) == (800, 800, 800)


def test_recording_into_a_run_removed_meanwhile_is_a_clear_error(db, ds):
    from sushitui.training import TrainingError, remove_run

    create_run("r", ds.name)
    run = open_run("r", flush_every=10_000, flush_seconds=3600)
    run.record(item_ids(db)[:2], 1, 0)
    remove_run("r")  # e.g. from the TUI while the trainer runs
    with pytest.raises(TrainingError, match="removed while recording"):
        run.flush()
    assert run.pending_events == 2  # kept, not silently dropped
    assert usage_invariants(db) == (0, 0, 0)


def test_a_run_dropped_without_close_still_writes_its_buffer(db, ds):
    import gc

    create_run("r", ds.name)
    run = open_run("r", flush_every=10_000, flush_seconds=3600)
    run.record(item_ids(db)[:4], 1, 0)
    del run
    gc.collect()
    assert TrainingRun.get(TrainingRun.name == "r").samples_seen == 4


def test_a_run_dropped_inside_another_transaction_is_written_after_it_not_lost_with_it(db, ds, monkeypatch):
    """Garbage collection runs a dropped Run's last flush wherever this thread is. Inside
    another write transaction of the same thread, a flush on this thread's connection would
    join that transaction and vanish with its rollback (on PostgreSQL it waited forever on
    the connection's lock, which this thread held): the flush has a thread of its own."""
    import gc
    import threading

    from sushitui.store import write_transaction
    from sushitui.training import recorder

    monkeypatch.setattr(recorder, "DROPPED_FLUSH_WAIT_S", 0.2)
    create_run("r", ds.name)
    run = open_run("r", flush_every=10_000, flush_seconds=3600)
    run.record(item_ids(db)[:4], 1, 0)
    with pytest.raises(RuntimeError, match="the other work failed"):
        with write_transaction(db):
            db.execute_sql("UPDATE dataset SET name = name")
            del run
            gc.collect()
            raise RuntimeError("the other work failed")
    for thread in threading.enumerate():
        if thread.name == "sushitui-run-flush":
            thread.join(30)
    assert TrainingRun.get(TrainingRun.name == "r").samples_seen == 4


def test_a_removed_run_is_looked_up_in_its_own_database_not_the_current_one(db, ds, tmp_path):
    """The run was removed from its catalogue while recording; meanwhile the process opened
    another database that has a run with the same id. The error must still say the run is
    gone (the lookup once asked the other database and went on as if it were there)."""
    from sushitui.store import open_database
    from sushitui.training import TrainingError, remove_run

    create_run("r", ds.name)
    run = open_run("r", flush_every=10_000, flush_seconds=3600)
    run.record(item_ids(db)[:2], 1, 0)
    remove_run("r")
    open_database(str(tmp_path / "other.db"))
    make_dataset(tmp_path / "other-images", 2, name="other", files=False)
    create_run("r2", "other")
    assert TrainingRun.get(TrainingRun.name == "r2").id == run.id
    with pytest.raises(TrainingError, match="removed while recording"):
        run.flush()
    assert run.pending_events == 2


def test_a_failing_automatic_flush_does_not_stop_the_training_loop(db, ds):
    from sushitui.training import TrainingError, remove_run
    from sushitui.training.recorder import RecordingWarning

    create_run("r", ds.name)
    ids = item_ids(db)
    run = open_run("r", flush_every=2, flush_seconds=3600)
    remove_run("r")  # every flush from now on fails
    with pytest.warns(RecordingWarning, match="could not be written"):
        for step in range(50):  # the loop goes on; one warning, no exception
            run.record(ids[:2], 1, step)
    assert run.pending_events == 100
    with pytest.raises(TrainingError):  # an explicit flush/close reports it
        run.close()
