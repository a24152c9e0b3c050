"""The pack queue (corral/host/pack.py): claims, requeues, reaping, cancellation, status.

The race test has 100 worker processes claim 10,000 entries of one directory at once."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

from corral.core.job import Failure, FailureReason, JobState
from corral.core.workspace import final_state, write_done, write_failed
from corral.host import pack


def entries(tmp_path: Path, n: int, **kw) -> list[pack.Entry]:
    out = []
    for i in range(n):
        job_dir = tmp_path / "jobs" / "t.T" / f"{i:064x}"
        (job_dir / ".corral").mkdir(parents=True)
        out.append(pack.Entry(dir=str(job_dir), deps=[], **kw))
    return out


def _claimer(pool: str, worker: str, out: str) -> None:
    mine = []
    root = Path(pool)
    (root / pack.CLAIMED / worker).mkdir(parents=True, exist_ok=True)
    while True:
        names = pack.ready_entries(root)
        if not names:
            break
        # start at a different place each worker, as real workers' timing does
        offset = hash(worker) % len(names)
        for name in names[offset:] + names[:offset]:
            if pack.claim(root, worker, name):
                mine.append(name)
    Path(out).write_text("\n".join(mine))


def test_a_hundred_workers_racing_for_ten_thousand_claims_never_share_one(tmp_path):
    pool = tmp_path / "pool"
    jobs = [pack.Entry(dir=f"/ws/jobs/t.T/{i:064x}", deps=[]) for i in range(10_000)]
    pack.enqueue(pool, jobs)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_claimer, args=(str(pool), f"w{i}", str(tmp_path / f"w{i}.txt")))
        for i in range(100)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    claimed = [n for i in range(100) for n in (tmp_path / f"w{i}.txt").read_text().split() if n]
    assert len(claimed) == 10_000
    assert len(set(claimed)) == 10_000  # no entry claimed twice
    assert pack.ready_entries(pool) == []
    on_disk = pack.claimed_entries(pool)
    assert len(on_disk) == 10_000
    workers_seen = {w for w in on_disk.values()}
    assert len(workers_seen) > 10  # the race really had many winners


def test_enqueue_twice_does_not_queue_a_claimed_job_again(tmp_path):
    pool = tmp_path / "pool"
    (job,) = entries(tmp_path, 1)
    handles = pack.enqueue(pool, [job])
    assert handles == [{"pack": str(pool), "entry": pack.entry_name(Path(job.dir))}]
    (pool / pack.CLAIMED / "w1").mkdir(parents=True)
    assert pack.claim(pool, "w1", handles[0]["entry"])
    assert not pack.claim(pool, "w2", handles[0]["entry"])
    pack.enqueue(pool, [job])  # a client submitting again
    assert pack.ready_entries(pool) == []


def test_status_queued_running_done_and_lost(tmp_path):
    pool = tmp_path / "pool"
    queued, running, done, gone = entries(tmp_path, 4)
    pack.enqueue(pool, [queued, running, done, gone])
    (pool / pack.CLAIMED / "w1").mkdir(parents=True)
    pack.claim(pool, "w1", pack.entry_name(Path(running.dir)))
    pack.claim(pool, "w1", pack.entry_name(Path(done.dir)))
    write_done(Path(done.dir), {})
    pack.release(pool, "w1", pack.entry_name(Path(done.dir)))
    (pool / pack.READY / pack.entry_name(Path(gone.dir))).unlink()
    found = pack.status(pool, [Path(e.dir) for e in (queued, running, done, gone)])
    assert [s[0][0] for s in found] == [
        JobState.SUBMITTED, JobState.RUNNING, JobState.DONE, JobState.FAILED]
    assert found[1][1] == "w1"
    assert found[3][0][1].reason is FailureReason.LOST


def test_reaping_requeues_what_a_dead_worker_interrupted_and_keeps_what_ended(tmp_path):
    pool = tmp_path / "pool"
    interrupted, finished, crashed, cancelled = entries(tmp_path, 4, max_attempts=2)
    pack.enqueue(pool, [interrupted, finished, crashed, cancelled])
    (pool / pack.CLAIMED / "dead").mkdir(parents=True)
    for e in (interrupted, finished, crashed, cancelled):
        assert pack.claim(pool, "dead", pack.entry_name(Path(e.dir)))
    # the worker's end stopped this one with SIGTERM: a `killed` marker, not its own end
    write_failed(Path(interrupted.dir), Failure(FailureReason.KILLED, "killed by SIGTERM"))
    write_done(Path(finished.dir), {})
    write_failed(Path(crashed.dir), Failure(FailureReason.FAILED, "ValueError: bad"))
    pack.request_cancel(pool, pack.entry_name(Path(cancelled.dir)))  # `corral jobs kill`
    outcomes = pack.reap(pool, {"dead"})
    assert outcomes[pack.entry_name(Path(interrupted.dir))] == "requeued"
    assert final_state(Path(interrupted.dir)) is None  # its `killed` marker was not its end
    assert pack.ready_entries(pool) == [pack.entry_name(Path(interrupted.dir))]
    requeued = pack.Entry.read(pool / pack.READY / pack.entry_name(Path(interrupted.dir)))
    assert requeued is not None and requeued.attempt == 1
    assert final_state(Path(finished.dir)) == (JobState.DONE, None)
    assert final_state(Path(crashed.dir))[1].reason is FailureReason.FAILED  # its own failure
    assert final_state(Path(cancelled.dir))[1].reason is FailureReason.KILLED
    assert pack.claimed_entries(pool) == {}
    # a second death of its worker uses the last attempt: lost, with the reason
    (pool / pack.CLAIMED / "dead2").mkdir(parents=True)
    assert pack.claim(pool, "dead2", pack.entry_name(Path(interrupted.dir)))
    assert pack.reap(pool, {"dead2"}) == {pack.entry_name(Path(interrupted.dir)): "lost"}
    failure = final_state(Path(interrupted.dir))[1]
    assert failure.reason is FailureReason.LOST
    assert "its worker dead2 ended; given up after 2 attempt(s)" in failure.message


def test_cancelling_a_queued_job_ends_it_at_once(tmp_path):
    pool = tmp_path / "pool"
    (job,) = entries(tmp_path, 1)
    pack.enqueue(pool, [job])
    assert pack.request_cancel(pool, pack.entry_name(Path(job.dir)))
    assert pack.ready_entries(pool) == []
    assert final_state(Path(job.dir))[1].message == "cancelled before it ran"


def test_alive_for_a_client_that_re_attaches(tmp_path):
    pool = tmp_path / "pool"
    queued, running, ended = entries(tmp_path, 3)
    handles = pack.enqueue(pool, [queued, running, ended])
    (pool / pack.CLAIMED / "w").mkdir(parents=True)
    pack.claim(pool, "w", handles[1]["entry"])
    pack.claim(pool, "w", handles[2]["entry"])
    pack.release(pool, "w", handles[2]["entry"])
    assert pack.alive(handles) == [True, True, False]
    assert json.loads(pack.Entry(dir="/d", deps=["/e"]).to_json())["deps"] == ["/e"]
    assert os.path.isdir(pool / pack.CLAIMED / "w")
