"""LauncherPool: the member of a job is chosen by free CPU and GPU slots."""

from __future__ import annotations

from corral import experiment
from corral.core.pool import LauncherPool
from corral.launchers.local import LocalLauncher
from tests.execution.tasks import After, GpuRecord, Record, read_log


def test_a_gpu_job_goes_where_a_gpu_is_free(tmp_path):
    log = tmp_path / "log.jsonl"
    one = LocalLauncher(cpu_slots=4, gpu_slots=1, slots_dir=tmp_path / "slots-one")
    two = LocalLauncher(cpu_slots=4, gpu_slots=2, slots_dir=tmp_path / "slots-two")
    with experiment(tmp_path / "ws", "pool", launcher=LauncherPool([one, two])) as xp:
        for i in range(3):
            GpuRecord(name=f"g{i}", sleep=0.5, log=log).submit()
        cpu = Record(name="c", log=log)
        cpu.submit()
        After(before=cpu, log=log).submit()
    placed = {getattr(job.task, "name", "after"): job.launcher for job in xp.jobs.values()}
    # most free GPUs first (two), then one (a free GPU, more free CPUs), then two's last GPU;
    # by free CPUs alone the first and third would both have gone to `one` and its single GPU
    assert [placed[f"g{i}"] is two for i in range(3)] == [True, False, True]
    assert placed["c"] is one  # a CPU job: the largest share of free CPUs
    assert placed["after"] is placed["c"]  # a dependent stays with its input
    gpu = [r for r in read_log(log) if r["name"].startswith("g")]
    assert len(gpu) == 3
    for a in gpu:  # on one member, two jobs overlapping in time never share a GPU
        for b in gpu:
            same = a is not b and placed[a["name"]] is placed[b["name"]]
            if same and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["cuda"] != b["cuda"], (a, b)


def test_without_dependencies_a_job_keeps_the_first_choice_when_it_is_best(tmp_path):
    log = tmp_path / "log.jsonl"
    one = LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "slots-one")
    two = LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "slots-two")
    with experiment(tmp_path / "ws", "spread", launcher=LauncherPool([one, two])) as xp:
        for i in range(4):
            Record(name=f"r{i}", log=log).submit()
    members = [job.launcher for job in xp.jobs.values()]
    assert members == [one, two, one, two]


def test_a_gpu_job_goes_to_the_member_with_gpus_even_if_picked_first_elsewhere(tmp_path):
    no_gpu = LocalLauncher(cpu_slots=4, gpu_slots=0, slots_dir=tmp_path / "slots-a")
    with_gpu = LocalLauncher(cpu_slots=1, gpu_slots=1, slots_dir=tmp_path / "slots-b")
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "pool-gpu", launcher=LauncherPool([no_gpu, with_gpu])) as xp:
        GpuRecord(name="g", log=log).submit()  # first pick: most free CPUs, no GPU there
    (job,) = xp.jobs.values()
    assert job.launcher is with_gpu
    assert [r["cuda"] for r in read_log(log)] == ["0"]
