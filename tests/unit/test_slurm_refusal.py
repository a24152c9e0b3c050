"""sbatch's refusals, said in one line that names the option refused and the valid values."""

from __future__ import annotations

from corral.host.slurm_text import explain_refusal, parse_partition_names

OPTIONS = ["--partition=gpux", "--time=10", "--gres=gpu:a100:1"]


def test_a_partition_names_the_option_the_valid_ones_and_the_closest():
    stderr = "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    assert explain_refusal(stderr, OPTIONS, ["debug", "gpu", "cpu"]) == (
        "sbatch refused --partition=gpux: Invalid partition name specified; "
        "partitions: debug, gpu, cpu (did you mean 'gpu'?)"
    )


def test_other_refusals_name_their_option():
    gres = "sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification"
    assert explain_refusal(gres, OPTIONS) == (
        "sbatch refused --gres=gpu:a100:1: Invalid generic resource (gres) specification"
    )
    time = "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)"
    assert explain_refusal(time, OPTIONS).startswith("sbatch refused --time=10: Requested time")


def test_an_unknown_refusal_keeps_slurms_words():
    assert explain_refusal("sbatch: error: something new\n", OPTIONS) == "sbatch: something new"
    assert explain_refusal("", OPTIONS) == "sbatch: no message"


def test_partition_names_from_sinfo():
    assert parse_partition_names("debug\ngpu\ngpu\ncpu\n") == ["debug", "gpu", "cpu"]
