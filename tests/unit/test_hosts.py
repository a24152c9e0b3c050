"""The hosts files: where they are, which wins, what a host builds, and every bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from corral import ConfigError
from corral.app.choose import launcher
from corral.app.hosts import (
    HostsConfig,
    load_hosts,
    locate,
    project_file,
    resolve_host,
    user_file,
)
from corral.app.plugins import Plugins
from corral.connectors.ssh import SSHConnector
from corral.core.launcher import Launcher
from corral.launchers.local import LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher
from corral.plugins.markers import hookimpl


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A temporary HOME (with an ssh config), XDG_CONFIG_HOME and project (a git root)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host gpubox\n    HostName 10.0.0.5\n    User alice\n"
        "Host mycluster\n    HostName login.example.org\n    User bob\n    Port 2200\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "src").mkdir()
    monkeypatch.chdir(project / "src")
    return tmp_path


@pytest.fixture
def plugins():
    return Plugins(entry_points=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def user_hosts(env: Path, text: str) -> Path:
    return write(env / "xdg" / "corral" / "hosts.toml", text)


# --- where the files are ---------------------------------------------------------------------


def test_user_file_honours_xdg_config_home(env, monkeypatch):
    assert user_file() == env / "xdg" / "corral" / "hosts.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert user_file() == env / "home" / ".config" / "corral" / "hosts.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # ignored, as the spec says
    assert user_file() == env / "home" / ".config" / "corral" / "hosts.toml"


def test_project_file_is_searched_up_to_the_git_root(env):
    write(env / "corral.toml", "[hosts.outside]\nlauncher = 'local'\n")  # above the git root
    assert project_file() is None
    found = write(env / "project" / "corral.toml", "[hosts.inside]\nlauncher = 'local'\n")
    assert project_file() == found
    assert load_hosts().names() == ["inside"]


def test_more_specific_files_win_per_host_and_come_first(env, tmp_path):
    user_hosts(env, """
        [hosts.shared]
        launcher = "local"
        cpu_slots = 1
        [hosts.mine]
        launcher = "local"
    """)
    write(env / "project" / "corral.toml", """
        [hosts.shared]
        launcher = "local"
        cpu_slots = 2
        [hosts.proj]
        launcher = "local"
    """)
    workspace = tmp_path / "ws"
    write(workspace / "corral.toml", """
        [hosts.ws]
        launcher = "local"
        [hosts.proj]
        launcher = "local"
        cpu_slots = 3
    """)
    config = load_hosts()
    assert config.names() == ["shared", "proj", "mine"]
    assert config.get("shared").options == {"cpu_slots": 2}  # the whole table is replaced
    config = load_hosts(workspace)
    assert config.names() == ["ws", "proj", "shared", "mine"]
    assert config.get("proj").options == {"cpu_slots": 3}
    assert [p.name for p in config.files()] == ["hosts.toml", "corral.toml", "corral.toml"]


def test_corral_toml_may_hold_other_tables_but_hosts_toml_may_not(env):
    write(env / "project" / "corral.toml", "[progress]\nquiet = true\n")
    assert len(load_hosts()) == 0
    path = user_hosts(env, "[hosts.a]\nlauncher = 'local'\n\n[host.b]\nlauncher = 'local'\n")
    with pytest.raises(ConfigError) as e:
        load_hosts()
    assert str(e.value) == (
        f"{path}:4: unknown top-level key 'host'; valid: hosts ([hosts.NAME] tables)"
    )


# --- building launchers ----------------------------------------------------------------------


def test_the_issue_example_builds_slurm_over_ssh_and_an_ssh_box(env, plugins):
    user_hosts(env, """
        [hosts.cluster]            # a SLURM cluster reached over SSH
        launcher = "slurm"
        ssh = "mycluster"          # ~/.ssh/config alias
        workdir = "/scratch/{user}/corral"
        partition = "gpu"
        [hosts.gpubox]
        launcher = "ssh"
        ssh = "gpubox"
        workdir = "~/corral"
        gpu_slots = 4
    """)
    config = load_hosts()
    cluster = config.build("cluster", plugins)
    assert isinstance(cluster, SlurmLauncher)
    assert isinstance(cluster.connector, SSHConnector)
    assert str(cluster.connector.destination) == "bob@login.example.org:2200"
    assert cluster.workdir == "/scratch/bob/corral"  # {user}: who the jobs run as
    assert cluster.options.partition == "gpu"
    box = config.build("gpubox", plugins)
    assert isinstance(box, SSHLauncher)
    assert str(box.ssh.destination) == "alice@10.0.0.5:22"
    assert (box.slots.cpus, box.slots.gpus) == (1, 4)


def test_ssh_table_takes_connector_arguments_with_paths_relative_to_the_file(env, plugins):
    write(env / "xdg" / "corral" / "rig_ssh_config", "Host rig\n  HostName 127.0.0.9\n  Port 2222\n")
    user_hosts(env, """
        [hosts.rig]
        launcher = "ssh"
        workdir = "/home/{user}/ws"
        setup = ["source /home/{user}/venv/bin/activate", "echo ${HOME}"]
        [hosts.rig.ssh]
        host = "carol@rig"
        config_file = "rig_ssh_config"
        login_shell = true
    """)
    built = load_hosts().build("rig", plugins)
    assert isinstance(built, SSHLauncher)
    assert str(built.ssh.destination) == "carol@127.0.0.9:2222"
    assert built.ssh.login_shell
    assert built.workdir == "/home/carol/ws"
    assert built.setup == ["source /home/carol/venv/bin/activate", "echo ${HOME}"]


def test_local_host_expands_the_local_user(env, plugins, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "dave")
    user_hosts(env, """
        [hosts.here]
        launcher = "local"
        cpu_slots = 3
        slots_dir = "/tmp/{user}-slots"
    """)
    built = load_hosts().build("here", plugins)
    assert isinstance(built, LocalLauncher)
    assert built.cpu_slots == 3
    assert built.slots_dir == "/tmp/dave-slots"


class LabLauncher(LocalLauncher):
    name = "lab"

    def __init__(self, *, queue: str = "default", priority: int = 0, **kwargs):
        if "partition" in kwargs:
            raise ConfigError("lab launcher: no partitions here; use queue")
        super().__init__()
        self.queue = queue
        self.priority = priority


class StrictLab(LocalLauncher):
    name = "strictlab"

    def __init__(self, *, queue: str = "default"):
        super().__init__()
        self.queue = queue


class LabPlugin:
    @hookimpl
    def corral_register_launchers(self, registry):
        registry.add(LabLauncher)
        registry.add(StrictLab)


def test_plugin_launchers_are_configured_the_same_way(env):
    path = user_hosts(env, """
        [hosts.lab1]
        launcher = "lab"
        queue = "fast"
        priority = 5
        [hosts.lab2]
        launcher = "strictlab"
        queue = "slow"
        prio = 1
        [hosts.lab3]
        launcher = "lab"
        partition = "x"
    """)
    plugins = Plugins(entry_points=False, extra=(LabPlugin(),))
    config = load_hosts()
    built = config.build("lab1", plugins)
    assert isinstance(built, LabLauncher)
    assert (built.queue, built.priority) == ("fast", 5)
    with pytest.raises(ConfigError) as e:
        config.build("lab2", plugins)
    assert str(e.value) == (
        f"{path}:8: host 'lab2': unknown key 'prio' for launcher 'strictlab'; "
        "valid: capacity, launcher, queue, ssh"
    )
    with pytest.raises(ConfigError) as e:  # the launcher's own error, placed in the file
        config.build("lab3", plugins)
    assert str(e.value) == f"{path}:9: host 'lab3': lab launcher: no partitions here; use queue"


def test_launcher_function_and_resolve_host(env):
    user_hosts(env, "[hosts.here]\nlauncher = 'local'\ncpu_slots = 2\n")
    built = launcher("here")
    assert isinstance(built, LocalLauncher)
    assert built.cpu_slots == 2
    assert isinstance(launcher("local"), LocalLauncher)  # a type no host shadows
    plugins = Plugins(entry_points=False)
    assert resolve_host("nothere", plugins) is None
    assert isinstance(resolve_host("here", plugins), LocalLauncher)
    with pytest.raises(ConfigError) as e:
        launcher("nothere")
    assert str(e.value) == (
        "unknown host 'nothere' (did you mean 'here'?); declared hosts: here; launcher types: local, slurm, ssh"
    )


def test_unknown_host_without_any_file_says_where_it_looked(env):
    config = load_hosts()
    with pytest.raises(ConfigError) as e:
        config.get("cluster")
    assert str(e.value) == (
        f"unknown host 'cluster'; declared: none (looked in {env}/xdg/corral/hosts.toml)"
    )


# --- bad input: one line, the file and line, what is valid -----------------------------------


def error(env: Path, text: str, host: str = "h", plugins: Plugins | None = None) -> str:
    user_hosts(env, text)
    with pytest.raises(ConfigError) as e:
        load_hosts().build(host, plugins or Plugins(entry_points=False))
    message = str(e.value)
    assert "\n" not in message
    return message.replace(str(env / "xdg" / "corral" / "hosts.toml"), "F")


def test_bad_key_names_file_line_and_valid_keys(env):
    assert error(env, """
        # comment
        [hosts.h]
        launcher = "ssh"
        ssh = "gpubox"
        workdir = "~/w"
        gpu = 2
    """) == (
        "F:6: host 'h': unknown key 'gpu' for launcher 'ssh'; valid: cancel_grace, capacity, "
        "cpu_slots, gpu_slots, gpu_type, host, launcher, pack, python, setup, slots_dir, ssh, "
        "workdir"
    )


def test_capacity_that_is_not_a_launcher_argument_points_to_the_capacity_table(env):
    message = error(env, """
        [hosts.h]
        launcher = "local"
        gpu_mem = "24G"
    """)
    assert message.startswith(
        "F:3: host 'h': unknown key 'gpu_mem' for launcher 'local' (declare it in "
        "[hosts.h.capacity]); valid: "
    )


def test_bad_capacity_key(env):
    assert error(env, """
        [hosts.h]
        launcher = "local"
        [hosts.h.capacity]
        gpus = 1
        vram = "24G"
    """) == ("F:5: host 'h': unknown capacity 'vram'; valid: cpus, gpus, gpu_type, mem, gpu_mem, "
             "time, nodes")


def test_host_named_like_a_launcher_type(env):
    assert error(env, "[hosts.slurm]\nlauncher = 'slurm'\n", host="slurm") == (
        "F:1: host 'slurm' is named like the launcher type 'slurm' (registered by plugin "
        "'corral.launchers.slurm'): rename the host, so that a name means one thing"
    )
    plugins = Plugins(entry_points=False, extra=(LabPlugin(),))
    assert error(env, "[hosts.lab]\nlauncher = 'local'\n", host="lab", plugins=plugins) == (
        "F:1: host 'lab' is named like the launcher type 'lab' (registered by plugin "
        "'tests.unit.test_hosts.LabPlugin'): rename the host, so that a name means one thing"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[hosts.h]\ncpus = 1\n", "F:1: host 'h' needs launcher = \"<a registered launcher name>\""),
        ("[hosts.h]\nlauncher = 'k8s'\n",
         "F:2: host 'h': unknown launcher 'k8s'; registered: local, slurm, ssh"),
        ("[hosts.h]\nlauncher = 'ssh'\nssh = 'gpubox'\n",
         "F:1: host 'h': launcher 'ssh' needs key 'workdir'"),
        ("[hosts.h]\nlauncher = 'ssh'\nssh = 'gpubox'\nworkdir = 'rel'\n",
         "F:1: host 'h': SSHLauncher: workdir must be an absolute remote path"),
        ("[hosts.h]\nlauncher = 'ssh'\nssh = 'gpubox'\nworkdir = '/s/{usr}'\n",
         "F:4: unknown placeholder {usr} in '/s/{usr}'; valid: {user}"),
        ("[hosts.h]\nlauncher = 'ssh'\nworkdir = '/w'\nssh = { host = 'gpubox', port = 'x' }\n",
         "F:4: host 'h': SSH host 'gpubox': port 'x' is not a number"),
        ("[hosts.h]\nlauncher = 'ssh'\nworkdir = '/w'\nssh = { hots = 'gpubox' }\n",
         "F:4: host 'h': the ssh table needs host = "),
        ("[hosts.h]\nlauncher = 'ssh'\nworkdir = '/w'\n[hosts.h.ssh]\nhost = 'a'\nprot = 1\n",
         "F:6: host 'h': unknown ssh key 'prot'; valid: config_file, host, host_key_policy, "),
        ("[hosts.h]\nlauncher = 'ssh'\nssh = 42\n",
         "F:3: host 'h': ssh must be an ssh alias, 'user@host:port', or a table"),
        ("[hosts.h]\nlauncher = 'local'\ncapacity = 4\n",
         "F:3: host 'h': capacity must be a table ([hosts.h.capacity])"),
        ("[hosts.h]\nlauncher = 'local'\ncpu_slots = 'many'\n", "F:1: host 'h': "),
        ("[hosts]\nh = 3\n", "F:2: host 'h' must be a table ([hosts.h]), got int"),
        ("hosts = 3\n", "F:1: 'hosts' must hold [hosts.NAME] tables"),
        ('[hosts."bad name"]\nlauncher = "local"\n', "F:1: host name 'bad name': letters, digits"),
    ],
)
def test_bad_hosts(env, text, expected):
    host = "bad name" if "bad name" in text else "h"
    assert error(env, text, host=host).startswith(expected)


def test_invalid_toml_names_the_file_and_line(env):
    path = user_hosts(env, "[hosts.h]\nlauncher = local\n")
    with pytest.raises(ConfigError) as e:
        load_hosts()
    assert str(e.value).startswith(f"{path}: invalid TOML: ")
    assert "line 2" in str(e.value)


# --- finding lines ---------------------------------------------------------------------------


def test_locate_handles_dotted_quoted_and_inline_forms():
    text = textwrap.dedent("""
        [hosts]
        inline = { launcher = "ssh", gpu = 1 }
        dotted.launcher = "local"
        dotted.gpu = 2

        [ hosts . "quoted.name" ]
        setup = [
          "a = b",
        ]
        gpu = 3
        [hosts.sub.capacity]
        vram = 1
    """)
    assert locate(text, ["hosts", "inline", "gpu"]) == 3  # the inline table's line
    assert locate(text, ["hosts", "dotted"]) == 4
    assert locate(text, ["hosts", "dotted", "gpu"]) == 5
    assert locate(text, ["hosts", "quoted.name"]) == 7
    assert locate(text, ["hosts", "quoted.name", "gpu"]) == 11
    assert locate(text, ["hosts", "sub", "capacity", "vram"]) == 13
    assert locate(text, ["hosts", "sub"]) == 12
    assert locate(text, ["other"]) is None


def test_hosts_config_is_iterable_in_order(env):
    user_hosts(env, "[hosts.b]\nlauncher = 'local'\n[hosts.a]\nlauncher = 'local'\n")
    config = load_hosts()
    assert isinstance(config, HostsConfig)
    assert [h.name for h in config] == ["b", "a"]
    assert "a" in config and "c" not in config
    assert isinstance(launcher("a"), Launcher)


def test_a_host_packs_its_jobs_with_a_pack_table(env, plugins):
    from corral.launchers.packing import Pack

    user_hosts(env, """
        [hosts.cluster]
        launcher = "slurm"
        ssh = "mycluster"
        workdir = "/scratch/{user}/corral"
        pack = {workers = 8, per_worker = 4, idle = "30s"}
        [hosts.gpubox]
        launcher = "ssh"
        ssh = "gpubox"
        workdir = "~/corral"
        cpu_slots = 8
        pack = {workers = 2, per_worker = 4}
    """)
    config = load_hosts()
    assert config.build("cluster", plugins).pack == Pack(workers=8, per_worker=4, idle="30s")
    assert config.build("gpubox", plugins).pack == Pack(workers=2, per_worker=4)


def test_a_mistyped_pack_key_names_the_valid_ones(env):
    assert error(env, """
        [hosts.h]
        launcher = "ssh"
        ssh = "gpubox"
        workdir = "~/w"
        pack = {worker = 2}
    """) == (
        "F:5: host 'h': unknown pack key 'worker' (did you mean 'workers'?); valid: workers, "
        "per_worker, gpus, idle, time, mem"
    )
