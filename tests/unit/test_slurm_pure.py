"""SLURM script rendering (golden files) and state mapping: pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import ConfigError
from corral.core.job import Failure, FailureReason, JobState, Resources
from corral.host.slurm_text import array_wrapper, combine, controller_status
from corral.launchers.slurm_script import SlurmOptions, sbatch_options

DATA = Path(__file__).parent.parent / "data"


def test_array_wrapper_matches_golden_file(request):
    options = sbatch_options(
        Resources(cpus=4, gpus=1, mem="16G", time="02:00:00"),
        SlurmOptions.make(partition="gpu", account="lab", extra={"--exclusive": None,
                                                                 "--mail-type": "END"}),
    )
    text = array_wrapper(
        ["/scratch/ws/jobs/pkg.Learn/aa", "/scratch/ws/jobs/pkg.Learn/b b", "/x/it's"],
        options,
        name="corral",
        comment="corral:3:jobs/pkg.Learn/aa",
        output="/scratch/ws/.corral/arrays/%A_%a.out",
        dependency=["101_0", "101_3"],
        throttle=2,
    )
    golden = DATA / "slurm_array.sh"
    if request.config.getoption("--update-golden"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_sbatch_options_defaults_and_validation():
    assert sbatch_options(Resources(), SlurmOptions()) == ["--cpus-per-task=1"]
    with pytest.raises(ConfigError, match="unknown SLURM option 'partitoin'; valid: account, "):
        SlurmOptions.make(partitoin="x")
    # corral's durations and sizes become SLURM's; SLURM's own pass unchanged
    assert sbatch_options(Resources(time="2h", mem="4 GB"), SlurmOptions())[1:] == [
        "--mem=4096", "--time=120"]
    assert sbatch_options(Resources(time="1-12:00:00", mem="500M"), SlurmOptions())[1:] == [
        "--mem=500M", "--time=1-12:00:00"]
    assert sbatch_options(Resources(time="90s"), SlurmOptions())[1:] == ["--time=0-00:01:30"]
    with pytest.raises(ConfigError, match="resource time 'soon': expected a duration"):
        Resources(time="soon")
    # a GPU model, several nodes and tasks
    assert sbatch_options(
        Resources(gpus=2, gpu_type="a100", nodes=2, tasks_per_node=4), SlurmOptions()
    ) == ["--cpus-per-task=1", "--gres=gpu:a100:2", "--nodes=2", "--ntasks-per-node=4"]
    assert sbatch_options(Resources(nodes=2, tasks_per_node=4, torchrun=True), SlurmOptions()) == [
        "--cpus-per-task=1", "--nodes=2", "--ntasks-per-node=1"]  # one torchrun per node
    with pytest.raises(ConfigError, match="gpu_type 'a100' asks for a GPU model, but gpus=0"):
        sbatch_options(Resources(gpu_type="a100"), SlurmOptions())
    with pytest.raises(ConfigError, match="extra option '-x'"):
        SlurmOptions.make(extra={"-x": "1"})
    from corral.host.slurm_text import header

    with pytest.raises(ConfigError, match="white space and quotes are not allowed"):
        header(sbatch_options(Resources(), SlurmOptions.make(partition="a b")))


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        ("PENDING", "Priority", (JobState.SUBMITTED, None)),
        ("RUNNING", "None", (JobState.RUNNING, None)),
        ("COMPLETING", "", (JobState.RUNNING, None)),
        ("COMPLETED", "", (JobState.DONE, None)),
        ("TIMEOUT", "", FailureReason.TIMEOUT),
        ("OUT_OF_MEMORY", "", FailureReason.OUT_OF_MEMORY),
        ("CANCELLED by 0", "", FailureReason.CANCELLED),
        ("CANCELLED", "DependencyNeverSatisfied", FailureReason.DEPENDENCY),
        ("NODE_FAIL", "", FailureReason.NODE_FAIL),
        ("PREEMPTED", "", FailureReason.PREEMPTED),
        ("FAILED", "NonZeroExitCode", FailureReason.FAILED),
        ("BOOT_FAIL", "", FailureReason.NODE_FAIL),
    ],
)
def test_controller_states(state, reason, expected):
    status = controller_status(state, reason)
    assert status is not None
    if isinstance(expected, FailureReason):
        assert status[0] is JobState.FAILED
        assert status[1].reason is expected
    else:
        assert status == expected


def test_marker_wins_except_for_what_only_the_controller_knows():
    done = (JobState.DONE, None)
    killed = (JobState.FAILED, Failure(FailureReason.KILLED, "killed by SIGTERM"))
    raised = (JobState.FAILED, Failure(FailureReason.FAILED, "ValueError: x"))
    timeout = controller_status("TIMEOUT")
    assert combine(controller_status("COMPLETED"), done) == done
    assert combine(controller_status("FAILED"), raised) == raised
    assert combine(timeout, killed) == timeout  # the limit, not the SIGTERM it sent
    assert combine(controller_status("RUNNING"), killed) == controller_status("RUNNING")
    assert combine(None, done) == done
    lost = combine(controller_status("COMPLETED"), None)
    assert lost[1].reason is FailureReason.LOST
    assert combine(None, None)[1].reason is FailureReason.LOST


def test_parse_states_expands_arrays_and_ignores_ambiguous_records():
    from corral.host.slurm_text import expand_indices, parse_states

    assert expand_indices("0-3,7%2") == ["0", "1", "2", "3", "7"]
    assert expand_indices("5") == ["5"]
    sacct = "\n".join([
        "40_0|COMPLETED|None",
        "40_[2-3%1]|PENDING|JobArrayTaskLimit",
        "41|PENDING|Dependency",  # a whole array, no task started
        "42|FAILED|None",  # the record of some task of 42: which one, it does not say
        "",
    ])
    wanted = ["40_0", "40_1", "40_2", "40_3", "41_0", "41_5", "42_0"]
    assert parse_states(sacct, wanted) == {
        "40_0": ("COMPLETED", "None"),
        "40_2": ("PENDING", "JobArrayTaskLimit"),
        "40_3": ("PENDING", "JobArrayTaskLimit"),
        "41_0": ("PENDING", "Dependency"),
        "41_5": ("PENDING", "Dependency"),
    }
    squeue = "7_0|RUNNING|None\n7_1|PENDING|Resources\n"
    assert parse_states(squeue, ["7_1"]) == {"7_1": ("PENDING", "Resources")}


def test_submit_budget_keeps_under_the_limit_and_learns_from_refusals():
    from corral.launchers.slurm_limits import MIN_PAUSE, SubmitBudget

    now = [0.0]
    budget = SubmitBudget(limit=4, clock=lambda: now[0])
    assert budget.room() == 4
    for job in "abc":
        budget.queued(job)
    assert budget.room() == 1
    budget.finished("a")
    assert budget.room() == 2
    budget.refused(2)  # the user's other jobs count too: what is queued is the limit
    assert budget.learned == 2
    assert budget.room() == 0 and budget.paused_for == MIN_PAUSE
    now[0] += MIN_PAUSE
    assert budget.room() == 0  # 2 queued, limit learned 2
    budget.finished("b")
    assert budget.room() == 1
    budget.refused(1)
    assert budget.paused_for == 2 * MIN_PAUSE  # backing off
    budget.accepted()

    unknown = SubmitBudget(clock=lambda: now[0])
    assert unknown.room() is None  # no limit known: no cap
    unknown.refused(10)  # nothing queued: try half as many next time
    now[0] += MIN_PAUSE
    assert unknown.room() == 5


def test_submit_limit_from_sacctmgr():
    from corral.launchers.slurm import _submit_limit

    out = "root|4\ncorral|\nother|10\n"
    assert _submit_limit(out, None) == 4
    assert _submit_limit(out, "other") == 10
    assert _submit_limit(out, "corral") is None
    assert _submit_limit("", None) is None


def test_a_squeue_that_got_no_answer_says_nothing_of_which_jobs_are_gone():
    from corral.host.slurm_text import squeue_answered

    assert squeue_answered(0, "")
    assert squeue_answered(1, "slurm_load_jobs error: Invalid job id specified\n")  # forgotten
    assert not squeue_answered(1, "slurm_load_jobs error: Socket timed out on send/recv operation")
    assert not squeue_answered(1, "squeue: error: Unable to contact slurm controller (connect failure)")
    assert not squeue_answered(-9, "")


def test_a_controller_that_did_not_answer_pauses_submissions_but_teaches_no_limit():
    from corral.launchers.slurm_limits import MIN_PAUSE, SubmitBudget

    now = [0.0]
    budget = SubmitBudget(limit=4, clock=lambda: now[0])
    budget.queued("a")
    budget.unanswered()
    assert budget.room() == 0 and budget.paused_for == MIN_PAUSE
    assert budget.learned is None
    now[0] += MIN_PAUSE
    assert budget.room() == 3
    budget.unanswered()
    assert budget.paused_for == 2 * MIN_PAUSE  # backing off while it does not answer


def test_slurm_commands_drop_the_callers_job_variables_but_not_the_configuration(monkeypatch):
    from corral.host.slurm import clean_env

    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    monkeypatch.setenv("SLURM_CONF", "/site/slurm.conf")
    env = clean_env()
    assert "SLURM_JOB_ID" not in env and "SLURM_CPUS_PER_TASK" not in env
    assert env["SLURM_CONF"] == "/site/slurm.conf"
    assert env["PATH"] == __import__("os").environ["PATH"]
