"""The launcher finder: queries, declared capacities, the first match, and `corral find`."""

from __future__ import annotations

import math
import textwrap

import pytest
from click.testing import CliRunner

import corral.cli.find  # noqa: F401  (registers `corral find`)
from corral import ConfigError
from corral.app.choose import find_launcher
from corral.app.finder import SYNTAX, find_host, match_hosts, parse_query
from corral.cli import cli
from corral.core.units import parse_duration, parse_size
from corral.launchers.local import LocalLauncher
from corral.launchers.ssh import SSHLauncher

HOSTS = """
    [hosts.laptop]
    launcher = "local"
    cpu_slots = 8

    [hosts.gpubox]                 # an SSH box with 4 GPUs of 24 GB
    launcher = "ssh"
    ssh = "alice@gpubox"
    workdir = "~/corral"
    cpu_slots = 32
    gpu_slots = 4
    capacity = { gpu_mem = "24G", mem = "256G", time = "unlimited" }

    [hosts.cluster]
    launcher = "slurm"
    ssh = "bob@login"
    workdir = "/scratch/{user}"
    [hosts.cluster.capacity]       # what a job may ask there, not a job's default
    cpus = 64
    gpus = 8
    gpu_mem = "80G"
    mem = "512G"
    time = "2-00:00:00"
"""


@pytest.fixture
def hosts_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CORRAL_WORKSPACE", raising=False)
    (tmp_path / "project" / ".git").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    path = tmp_path / "xdg" / "corral" / "hosts.toml"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(HOSTS).lstrip())
    return path


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1.5h", 5400), ("45s", 45), ("1d", 86400),
        ("30", 1800), ("5:00", 300), ("2:00:00", 7200), ("1-12", 129600),
        ("1-12:30", 131400), ("1-12:00:00", 129600), ("UNLIMITED", math.inf), (120, 7200),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "mib"),
    [("24G", 24576), ("512M", 512), ("1.5T", 1572864), ("2048", 2048), ("24GB", 24576),
     ("24GiB", 24576), ("64k", 1 / 16), (4096, 4096)],
)
def test_sizes(text, mib):
    assert parse_size(text) == mib * 1024**2


@pytest.mark.parametrize("text", ["2x", "h", "1:2:3:4", "-1", "", True])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="expected|duration like"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["24X", "G", "24 GB B", "-2G", True])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="a size like"):
        parse_size(text)


# --- queries ---------------------------------------------------------------------------------


def test_the_issue_query_parses():
    terms = parse_query("cpus=4 & gpus=1 & gpu_mem>=24G & time<=2h")
    assert [str(t) for t in terms] == ["cpus=4", "gpus=1", "gpu_mem>=24G", "time<=2h"]
    assert terms[2].value == 24 * 1024**3
    assert parse_query("  gpus >= 1&mem<1T ")[1].op == "<"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", f"empty launcher query; {SYNTAX}"),
        ("cpus=>4", f"launcher query 'cpus=>4': cannot read 'cpus=>4'; {SYNTAX}"),
        ("cpus==4", f"launcher query 'cpus==4': cannot read 'cpus==4'; {SYNTAX}"),
        ("gpus>=1 &", f"launcher query 'gpus>=1 &': cannot read ''; {SYNTAX}"),
        ("gpus>=1 and cpus=2", f"launcher query 'gpus>=1 and cpus=2': cannot read "
                               f"'gpus>=1 and cpus=2'; {SYNTAX}"),
        ("vram>=24G", "launcher query 'vram>=24G': unknown key 'vram'; valid: cpus, gpus, "
                      "gpu_type, mem, gpu_mem, time, nodes"),
        ("gpu_mem>=24X", "launcher query 'gpu_mem>=24X': gpu_mem '24X': expected a size like "
                         "512M, 24G or 1.5T (K, M, G, T; a bare number is megabytes)"),
        ("cpus>=1.5", "launcher query 'cpus>=1.5': cpus '1.5': expected a whole number >= 0"),
        ("time<=2y", "launcher query 'time<=2y': time '2y': expected a duration like 90m"),
    ],
)
def test_malformed_queries_are_one_line_errors(query, message):
    with pytest.raises(ConfigError) as e:
        parse_query(query)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


# --- matching hosts --------------------------------------------------------------------------


def test_explain_says_why_each_host_fails(hosts_file):
    results = match_hosts("gpus>=1 & gpu_mem>=40G & time<=2-00:00:00")
    assert [(r.name, r.matches, r.reasons) for r in results] == [
        ("laptop", False, ("declares no gpus", "declares no gpu_mem", "declares no time")),
        ("gpubox", False, ("gpu_mem = 24G; the job needs 40G or more",)),
        ("cluster", True, ()),
    ]
    assert results[1].where == f"{hosts_file}:5"


def test_first_matching_host_wins_in_file_order(hosts_file):
    assert find_host("cpus>=8") == "laptop"
    assert find_host("cpus>8") == "gpubox"
    assert find_host("gpus=8 & mem>=512G") == "cluster"
    assert find_host("gpu_mem>=24576M") == "gpubox"  # sizes compare in bytes
    gpubox = find_launcher("cpus = 32 & gpus=4 & gpu_mem>=24G")
    assert isinstance(gpubox, SSHLauncher)
    assert str(gpubox.ssh.destination).startswith("alice@gpubox:")
    assert isinstance(find_launcher("cpus<=8"), LocalLauncher)


def test_the_query_describes_the_job(hosts_file):
    # the issue's own example: 4 CPUs, a GPU with 24G, a run of up to two hours
    assert find_host("cpus=4 & gpus=1 & gpu_mem>=24G & time<=2h") == "gpubox"
    assert find_host("time<=3-00:00:00 & gpus>=1") == "gpubox"  # unlimited fits any length
    assert find_host("gpus>4") == "cluster"


def test_no_match_lists_every_host_and_why(hosts_file):
    with pytest.raises(ConfigError) as e:
        find_launcher("gpus>=16")
    assert str(e.value) == (
        "no host matches 'gpus>=16': laptop: declares no gpus; gpubox: gpus = 4; the job needs "
        "16 or more; cluster: gpus = 8; the job needs 16 or more"
    )


def test_no_hosts_at_all(hosts_file):
    hosts_file.unlink()
    with pytest.raises(ConfigError) as e:
        find_launcher("gpus>=1")
    assert str(e.value) == (
        f"no host matches 'gpus>=1': no host is declared (looked in {hosts_file})"
    )


def test_capacity_table_wins_over_the_launcher_argument(hosts_file):
    hosts_file.write_text(textwrap.dedent("""
        [hosts.small]
        launcher = "local"
        cpu_slots = 2
        capacity = { cpus = 16 }
    """))
    assert find_host("cpus=16") == "small"


def test_bad_declared_capacity_names_the_line(hosts_file):
    hosts_file.write_text(textwrap.dedent("""
        [hosts.box]
        launcher = "local"
        [hosts.box.capacity]
        gpu_mem = "lots"
    """))
    with pytest.raises(ConfigError) as e:
        find_host("gpu_mem>=1G")
    assert str(e.value) == (
        f"{hosts_file}:5: host 'box': gpu_mem 'lots': expected a size like 512M, 24G or 1.5T "
        "(K, M, G, T; a bare number is megabytes)"
    )


# --- corral find -----------------------------------------------------------------------------


def test_corral_find_shows_matches_and_reasons(hosts_file):
    result = CliRunner().invoke(cli, ["find", "gpus>=4 & time>=1d"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "no     laptop   local: declares no gpus; declares no time",
        f"match  gpubox   ssh ({hosts_file}:5)  <- find_launcher picks this one",
        f"match  cluster  slurm ({hosts_file}:13)",
    ]


def test_corral_find_without_a_match_exits_1(hosts_file):
    result = CliRunner().invoke(cli, ["find", "gpus>=16"])
    assert result.exit_code == 1
    assert "no host matches 'gpus>=16'" in result.output
    assert "no     gpubox   ssh: gpus = 4; the job needs 16 or more" in result.output


def test_corral_find_with_a_bad_query_is_a_config_error(hosts_file):
    result = CliRunner().invoke(cli, ["find", "gpus=>1"])
    assert result.exit_code == 1
    assert f"launcher query 'gpus=>1': cannot read 'gpus=>1'; {SYNTAX}\n" in result.output
    assert "Traceback" not in result.output


def test_corral_find_reads_the_workspace_file(hosts_file, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "corral.toml").write_text("[hosts.wsbox]\nlauncher = 'local'\ncpu_slots = 128\n")
    result = CliRunner().invoke(cli, ["find", "cpus>=100", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("match  wsbox")
