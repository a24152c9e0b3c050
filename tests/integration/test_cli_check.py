"""`corral check HOST` against the rig's sshd and SLURM cluster (and this machine)."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

import corral.cli.check  # noqa: F401  (registers `corral check`)
from corral import __version__
from corral.cli import cli
from corral.connectors.ssh import close_all


@pytest.fixture(autouse=True)
def fresh_pool():
    yield
    close_all()


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    """Write a hosts file (in a temporary XDG_CONFIG_HOME) from the given TOML."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CORRAL_WORKSPACE", raising=False)
    (tmp_path / "project" / ".git").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    path = tmp_path / "xdg" / "corral" / "hosts.toml"
    path.parent.mkdir(parents=True)

    def write(text: str) -> None:
        path.write_text(textwrap.dedent(text).lstrip())

    return write


def ssh_table(ssh_host, **extra) -> str:
    lines = [f'host = "{ssh_host.alias}"', f'config_file = "{ssh_host.ssh_config}"']
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in extra.items()]
    return "{ " + ", ".join(lines).replace("'", '"') + " }"


def check(*args: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run `corral check`: its exit code, {check: (status, detail)} and its output."""
    result = CliRunner().invoke(cli, ["check", *args])
    lines = {}
    for line in result.output.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "FAIL", "WARN", "SKIP"):
            name, _, detail = rest.strip().partition("  ")
            lines[name] = (status, detail.strip())
    return result.exit_code, lines, result.output


def statuses(lines: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: status for name, (status, _) in lines.items()}


def test_slurm_over_ssh_passes(hosts, rig, ssh_host, slurm_cluster):
    hosts(f"""
        [hosts.cluster]
        launcher = "slurm"
        ssh = {ssh_table(ssh_host)}
        workdir = "/home/{{user}}/corral-check"
        python = "{rig.python}"
        partition = "{slurm_cluster.default_partition}"
    """)
    code, lines, output = check("cluster")
    assert code == 0, output
    accounting = "PASS" if slurm_cluster.sacct else "WARN"
    assert statuses(lines) == {
        "config": "PASS", "connects": "PASS", "host key": "PASS", "python": "PASS",
        "sbatch": "PASS", "sacct": accounting, "partitions": "PASS", "accounts": accounting,
        "workdir": "PASS", "disk": "PASS",
    }
    assert lines["connects"][1].startswith(f"corraltest@{ssh_host.host}:{ssh_host.port}")
    assert "ssh-ed25519 SHA256:" in lines["host key"][1]
    assert lines["python"][1].startswith(f"{rig.python}: Python 3.")
    assert lines["python"][1].endswith(f"corral {__version__}")
    assert lines["sbatch"][1].startswith("slurm")
    for partition in slurm_cluster.partitions:
        assert partition in lines["partitions"][1]
    # each partition's GPUs by type, from the same sinfo
    assert "gpu (up, max infinite, 2 node(s), 4 CPUs, gpu:a100:2 gpu:t4:2)" in lines["partitions"][1]
    assert lines["workdir"][1] == (
        "/home/corraltest/corral-check (created on first use, in writable /home/corraltest)"
    )
    assert " GiB free of " in lines["disk"][1]
    assert output.splitlines()[-1].startswith("cluster: ")


def test_ssh_host_with_a_wrong_python_fails_that_check_only(hosts, ssh_host):
    hosts(f"""
        [hosts.box]
        launcher = "ssh"
        ssh = {ssh_table(ssh_host)}
        workdir = "~/corral"
        python = "/nonexistent/bin/python"
    """)
    code, lines, output = check("box")
    assert code == 1, output
    assert statuses(lines) == {
        "config": "PASS", "connects": "PASS", "host key": "PASS", "python": "FAIL",
        "workdir": "PASS", "disk": "PASS",
    }
    assert lines["python"][1].startswith(
        "/nonexistent/bin/python -m corral.host.agent version on corraltest@"
    )
    assert "exit code 127" in lines["python"][1]
    assert lines["workdir"][1].startswith("/home/corraltest/corral ")
    assert output.splitlines()[-1] == "box: 5 passed, 1 failed"


def test_slurm_host_with_an_unknown_partition_and_account(hosts, rig, ssh_host, slurm_cluster):
    hosts(f"""
        [hosts.cluster]
        launcher = "slurm"
        ssh = {ssh_table(ssh_host)}
        workdir = "~/corral"
        python = "{rig.python}"
        partition = "nosuchpartition"
        account = "nosuchaccount"
    """)
    code, lines, output = check("cluster")
    assert code == 1, output
    assert lines["partitions"][0] == "FAIL"
    assert lines["partitions"][1].startswith("partition 'nosuchpartition' not found; available: ")
    if slurm_cluster.sacct:
        assert lines["accounts"][0] == "FAIL"
        assert lines["accounts"][1].startswith("account 'nosuchaccount' is not one of corraltest's: ")
    assert lines["python"][0] == "PASS"


def test_unknown_host_key_fails_and_skips_the_rest(hosts, tmp_path, ssh_host):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    hosts(f"""
        [hosts.box]
        launcher = "ssh"
        ssh = {ssh_table(ssh_host, known_hosts=str(empty))}
        workdir = "~/corral"
    """)
    code, lines, output = check("box")
    assert code == 1, output
    assert lines["connects"] == ("FAIL", "refused by the host key check")
    assert lines["host key"][0] == "FAIL"
    assert lines["host key"][1].startswith(f"unknown host key for [{ssh_host.host}]:{ssh_host.port}")
    assert {n: s for n, s in statuses(lines).items() if s == "SKIP"} == {
        "python": "SKIP", "workdir": "SKIP", "disk": "SKIP",
    }


def test_refused_connection(hosts, ssh_host):
    hosts(f"""
        [hosts.box]
        launcher = "ssh"
        ssh = {ssh_table(ssh_host, port=1)}
        workdir = "~/corral"
    """)
    code, lines, output = check("box")
    assert code == 1, output
    assert lines["connects"][0] == "FAIL"
    assert lines["connects"][1].startswith(f"cannot connect to corraltest@{ssh_host.host}:1")


def test_a_mistyped_alias_names_the_aliases_and_skips_what_cannot_mean_anything(hosts,
                                                                               ssh_host):
    typo = ssh_host.alias[:-2] + ssh_host.alias[-1] + ssh_host.alias[-2]  # corral-rgi
    hosts(f"""
        [hosts.box]
        launcher = "ssh"
        ssh = {{ host = "{typo}", config_file = "{ssh_host.ssh_config}" }}
        workdir = "~/corral"
    """)
    code, lines, output = check("box")
    assert code == 1, output
    assert lines["connects"][0] == "FAIL"
    assert (f"({typo!r} is not a Host of {ssh_host.ssh_config} (did you mean "
            f"{ssh_host.alias!r}?); Hosts there: ") in lines["connects"][1]
    assert lines["host key"] == ("SKIP", "not connected")  # no unknown-key verdict
    assert {status for name, (status, _) in lines.items() if name != "config"} - {
        "FAIL"} == {"SKIP"}


def test_local_host_and_quiet_mode(hosts, tmp_path):
    hosts("""
        [hosts.here]
        launcher = "local"
        cpu_slots = 2
    """)
    code, lines, output = check("here", "--workspace", str(tmp_path))
    assert code == 0, output
    assert statuses(lines) == {"config": "PASS", "python": "PASS", "workdir": "PASS", "disk": "PASS"}
    assert lines["workdir"][1] == f"{tmp_path} (writable)"
    code, _, output = check("here", "--min-free", "1000T")
    assert code == 1
    assert "less than --min-free 1000.0 TiB" in output
    assert f"{tmp_path}/project/workspace (created on first use, in writable " in output
    quiet = CliRunner().invoke(cli, ["-q", "check", "here", "-w", str(tmp_path), "--min-free", "1T0"])
    assert quiet.exit_code == 2  # a bad size is a usage error
    quiet = CliRunner().invoke(cli, ["-q", "check", "here", "--min-free", "1000T"])
    assert quiet.exit_code == 1
    assert quiet.output.startswith("FAIL  disk")
    assert len(quiet.output.splitlines()) == 1


def test_bad_declarations_and_options(hosts):
    hosts("""
        [hosts.here]
        launcher = "local"
        gpu = 1
    """)
    code, lines, _ = check("here")
    assert code == 1
    assert lines["config"][0] == "FAIL"
    assert "unknown key 'gpu' for launcher 'local'" in lines["config"][1]
    code, lines, _ = check("nothere")
    assert lines["config"] == ("FAIL", "unknown host 'nothere' (did you mean 'here'?); declared: here")
    result = CliRunner().invoke(cli, ["check", "here", "--min-free", "lots"])
    assert result.exit_code == 2
    assert "expected a size like 512M" in result.output
