"""Bad inputs through the public API and the CLI: each one a one-line error of an exact type
that names the thing and what is valid, with nothing written.

Every case is ``(build, error type, fragment)``; ``build(tmp_path)`` does the bad thing.
Cases that need a job to run are in ``tests/execution/test_bad_inputs_run.py``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from click.testing import CliRunner

import corral
from corral import (
    Config,
    ConfigError,
    ConnectorError,
    Constant,
    Param,
    PluginError,
    Secret,
    SubmitHook,
    Task,
    experiment,
    identifier,
    pathgenerator,
)
from corral.app.finder import find_host, parse_query
from corral.app.hosts import HostsConfig
from corral.app.plugins import Plugins
from corral.cli import cli
from corral.connectors.local import LocalConnector
from corral.connectors.ssh import SSHConnector
from corral.core.job import Job
from corral.core.launcher import Launcher
from corral.core.task import Dep
from corral.launchers.local import LocalLauncher
from corral.launchers.slurm import SlurmLauncher
from corral.launchers.ssh import SSHLauncher

Case = Callable[[Path], object]


class Model(Config):
    name: Param[str] = "m"
    hidden: Param[int] = 1
    layers: Param[list[int]] = []
    table: Param[dict[str, int]] = {}
    pair: Param[tuple[int, int]] = (0, 0)
    anything: Param[Any] = None
    version: Constant[int] = 2


class Learn(Task):
    model: Param[Model]
    epochs: Param[int]
    checkpoint: Annotated[Path, pathgenerator("model.pt")]

    def execute(self) -> None:
        """Never run: every case is refused before."""


class change(SubmitHook):
    """Submit hook: sets what the task's params say on the job (a resource or a variable)."""

    def process(self, job: Job, launcher: Launcher) -> None:
        task: Any = job.task
        if task.where == "resources":
            setattr(job.resources, task.key, task.value)
        else:
            job.environ[task.key] = task.value


@change()
class Hooked(Task):
    where: Param[str]
    key: Param[str]
    value: Param[Any]

    def execute(self) -> None:
        """Never run: every case is refused at submit."""


def check(error: BaseException, expected: type[BaseException], fragment: str) -> None:
    """The exact type, one line, and the fragment naming the thing and what is valid."""
    assert type(error) is expected, f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert fragment in message, message


def refused(build: Case, tmp_path: Path, expected: type[BaseException], fragment: str) -> None:
    with pytest.raises(expected) as caught:
        build(tmp_path)
    check(caught.value, expected, fragment)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user hosts file, and a current directory outside the project."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- configs -------------------------------------------------------------------------------


def _sealed(tmp_path: Path) -> Model:
    model = Model(layers=[1], table={"a": 1})
    identifier(model)
    return model


def _declare(annotation: Any, default: Any = None) -> Callable[[Path], object]:
    def build(tmp_path: Path) -> object:
        namespace: dict[str, Any] = {"__annotations__": {"x": annotation}}
        if default is not None:
            namespace["x"] = default
        return type("Bad", (Config,), namespace)

    return build


def _dep_twice(tmp_path: Path) -> object:
    model = Model()
    Dep(Learn(model=Model(), epochs=1))(model)
    return Dep(Learn(model=Model(), epochs=2))(model)


def _dep_after_identifier(tmp_path: Path) -> object:
    model = Model(hidden=5)
    identifier(model)
    return Dep(Learn(model=Model(), epochs=1))(model)


def _bad_id(tmp_path: Path) -> object:
    class Named(Config, id="my project.Named"):
        pass

    return Named


CONFIG_CASES = [
    pytest.param(lambda t: Model(name=3), ConfigError, "Model.name: expected str, got int",
                 id="int-for-str"),
    pytest.param(lambda t: Learn(model="small", epochs=1), ConfigError,
                 "Learn.model: expected Model, got str", id="str-for-nested-config"),
    pytest.param(lambda t: Model(layers=[1, "2"]), ConfigError,
                 "Model.layers: expected list[int], got list (at layers[1]: str '2')",
                 id="list-element-of-wrong-type"),
    pytest.param(lambda t: Model(table={1: 2}), ConfigError,
                 "Model.table: expected dict[str, int], got dict (at table key 1: int 1)",
                 id="dict-with-int-key"),
    pytest.param(lambda t: identifier(Model(anything={1: "a"})), ConfigError,
                 "Model.anything: cannot hash dict key 1: keys must be str",
                 id="any-dict-with-int-key"),
    pytest.param(lambda t: identifier(Model(anything={1j})), ConfigError,
                 "Model.anything: cannot hash a value of type complex", id="any-set-of-complex"),
    pytest.param(lambda t: Model(pair=(1, 2, 3)), ConfigError,
                 "Model.pair: expected tuple[int, int], got tuple of length 3",
                 id="tuple-of-wrong-length"),
    pytest.param(lambda t: identifier(Learn(model=Model())), ConfigError,
                 "Learn: missing required param(s) 'epochs'", id="missing-required-param"),
    pytest.param(lambda t: Model(hiden=3), ConfigError,
                 "Model: unknown param 'hiden' (did you mean 'hidden'?); valid: anything, hidden, layers, name, pair",
                 id="unknown-keyword"),
    pytest.param(lambda t: Model("m"), ConfigError, "Model() takes keyword arguments only",
                 id="positional-argument"),
    pytest.param(lambda t: setattr(_sealed(t), "hidden", 2), ConfigError,
                 "Model.hidden: cannot assign, the config is sealed", id="assign-to-sealed"),
    pytest.param(lambda t: _sealed(t).layers.append(2), ConfigError,
                 "Model.layers: cannot modify, the config is sealed", id="mutate-sealed-list"),
    pytest.param(lambda t: _sealed(t).table.update(b=2), ConfigError,
                 "Model.table: cannot modify, the config is sealed", id="mutate-sealed-dict"),
    pytest.param(lambda t: Model(version=3), ConfigError,
                 "Model.version is a Constant (2); it cannot be set", id="set-a-constant"),
    pytest.param(lambda t: identifier(Model(name="caf\udce9")), ConfigError,
                 "Model.name: 'caf\\udce9' is not valid Unicode", id="lone-surrogate-hashed"),
    pytest.param(lambda t: Learn(model=Model(), epochs=1, checkpoint="x"), ConfigError,
                 "Learn.checkpoint is a generated path and cannot be given",
                 id="generated-path-given"),
    pytest.param(lambda t: setattr(Learn(model=Model(), epochs=1), "checkpoint", "x"),
                 ConfigError, "Learn.checkpoint is a generated path and cannot be set",
                 id="generated-path-assigned"),
    pytest.param(lambda t: pathgenerator("../model.pt"), ConfigError,
                 "pathgenerator('../model.pt'): expected a non-empty relative path without '..'",
                 id="pathgenerator-dotdot"),
    pytest.param(lambda t: pathgenerator("/tmp/model.pt"), ConfigError,
                 "pathgenerator('/tmp/model.pt'): expected a non-empty relative path",
                 id="pathgenerator-absolute"),
    pytest.param(_declare(Annotated[Path, pathgenerator("a")], Path("b")), ConfigError,
                 "Bad.x: a pathgenerator field takes no default", id="pathgenerator-default"),
    pytest.param(_declare(Param[complex]), ConfigError,
                 "Bad.x: unsupported type complex; supported: bool, int", id="unsupported-type"),
    pytest.param(_declare(Param[dict[int, str]]), ConfigError,
                 "unsupported type dict[int, str] (dict keys must be str)", id="dict-int-keys-type"),
    pytest.param(_declare(Param[int], "a"), ConfigError,
                 "Bad.x: default 'a': expected int, got str", id="default-of-wrong-type"),
    pytest.param(_bad_id, ConfigError, "invalid id 'my project.Named': letters, digits",
                 id="class-id-with-space"),
    pytest.param(lambda t: Dep(Learn(model=Model(), epochs=1))(3), ConfigError,
                 "dep() takes a Config, got int", id="dep-of-non-config"),
    pytest.param(_dep_twice, ConfigError, "Model is already produced by another task",
                 id="dep-by-two-tasks"),
    pytest.param(_dep_after_identifier, ConfigError,
                 "Model: cannot mark with dep(), its identifier was already taken",
                 id="dep-after-identifier"),
    pytest.param(lambda t: identifier(3), ConfigError, "identifier() takes a Config, got int",
                 id="identifier-of-int"),
    pytest.param(lambda t: Secret(42), ConfigError, "Secret takes a str, got int", id="secret-int"),
    pytest.param(lambda t: Learn(model=Model(), epochs=1).submit(), ConfigError,
                 "Learn.submit() needs an experiment", id="submit-outside-experiment"),
]


@pytest.mark.parametrize(("build", "expected", "fragment"), CONFIG_CASES)
def test_config_inputs(build: Case, expected: type[BaseException], fragment: str,
                       tmp_path: Path) -> None:
    refused(build, tmp_path, expected, fragment)


def test_a_huge_param_is_hashed_fast_and_exactly():
    import time

    big = "x" * 10_000_000
    start = time.monotonic()
    ident = identifier(Model(name=big))
    assert time.monotonic() - start < 2.0
    assert ident != identifier(Model(name=big + "x"))


# --- experiments and submit ----------------------------------------------------------------


def _local(tmp_path: Path) -> LocalLauncher:
    return LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "slots")


def _in_experiment(task: Any, launcher: Any = None, submit_launcher: Any = None,
                   **options: Any) -> Case:
    """A case that submits ``task`` in an experiment of the workspace ``tmp_path/ws``."""

    def build(tmp_path: Path) -> object:
        chosen = launcher(tmp_path) if launcher is not None else _local(tmp_path)
        with experiment(tmp_path / "ws", "bad", launcher=chosen) as xp:
            xp.submit(task, submit_launcher, **options)
        return xp

    return build


def _hooked(where: str, key: str, value: Any, launcher: Any = None) -> Case:
    return _in_experiment(Hooked(where=where, key=key, value=value), launcher)


def _slurm(tmp_path: Path) -> SlurmLauncher:
    return SlurmLauncher(workdir=str(tmp_path / "cluster"))


def _workdir_is_a_file(tmp_path: Path) -> object:
    (tmp_path / "ws").write_text("not a directory")
    with experiment(tmp_path / "ws", "bad"):
        pass
    return None


def _in_a_file(tmp_path: Path) -> object:
    (tmp_path / "file").write_text("not a directory")
    with experiment(tmp_path / "file" / "ws", "bad"):
        pass
    return None


def _xp(name: Any = "bad", workdir: Any = None, launcher: Any = None) -> Case:
    def build(tmp_path: Path) -> object:
        with experiment(workdir if workdir is not None else tmp_path / "ws", name,
                        launcher=launcher):
            pass
        return None

    return build


EXPERIMENT_CASES = [
    pytest.param(_xp(name="my sweep"), ConfigError,
                 "experiment name 'my sweep': letters, digits, '_', '.', '-'",
                 id="experiment-name-with-space"),
    pytest.param(_xp(name="../up"), ConfigError, "experiment name '../up'",
                 id="experiment-name-dotdot"),
    pytest.param(_xp(name=7), ConfigError, "experiment name 7: letters", id="experiment-name-int"),
    pytest.param(_xp(workdir=7), ConfigError,
                 "experiment workdir: expected a path (str or Path), got int", id="workdir-int"),
    pytest.param(_workdir_is_a_file, ConfigError, "is not a directory", id="workdir-is-a-file"),
    pytest.param(_in_a_file, ConfigError, "is not a directory", id="workdir-under-a-file"),
    pytest.param(_xp(launcher="nope"), ConfigError,
                 "unknown host 'nope'; declared hosts: none", id="unknown-launcher-name"),
    pytest.param(_xp(launcher=3), ConfigError,
                 "launcher: expected a Launcher, a LauncherPool or a registered name, got int",
                 id="launcher-of-wrong-type"),
    pytest.param(_in_experiment(Learn(model=Model(), epochs=1), submit_launcher="lcoal", cpu_slots=1),
                 PluginError, "unknown launcher 'lcoal' (did you mean 'local'?); known: local, slurm, ssh",
                 id="misspelt-launcher-type-with-options"),
    pytest.param(_in_experiment(Learn(model=Model(), epochs=1), submit_launcher="local",
                                cpu=1),
                 ConfigError, "launcher 'local': unknown option 'cpu'; valid: cancel_grace",
                 id="unknown-launcher-option"),
    pytest.param(_in_experiment(Learn(model=Model(), epochs=1), submit_launcher="slurm",
                                partion="gpu"),
                 ConfigError, "launcher 'slurm': unknown option 'partion'; valid: account",
                 id="unknown-slurm-option-by-name"),
    pytest.param(_in_experiment(Learn(model=Model(), epochs=1),
                                submit_launcher=LocalLauncher(), cpu_slots=1),
                 ConfigError, "launcher options go with a launcher name, not an instance",
                 id="options-with-an-instance"),
    pytest.param(_in_experiment(Model()), ConfigError, "submit() takes a Task, got Model",
                 id="submit-a-config"),
    pytest.param(_in_experiment(Learn(model=Model())), ConfigError,
                 "Learn: missing required param(s) 'epochs'", id="submit-missing-param"),
    pytest.param(_hooked("resources", "cpus", 3), ConfigError,
                 "asks cpus=3, gpus=0; the local launcher has cpu_slots=2, gpu_slots=0",
                 id="more-cpus-than-the-host"),
    pytest.param(_hooked("resources", "cpus", -1), ConfigError,
                 "resource cpus must be a positive int, got -1", id="hook-negative-cpus"),
    pytest.param(_hooked("resources", "cpus", "2"), ConfigError,
                 "resource cpus must be a positive int, got '2'", id="hook-cpus-as-str"),
    pytest.param(_hooked("resources", "gpus", -2), ConfigError,
                 "resource gpus must be an int >= 0, got -2", id="hook-negative-gpus"),
    pytest.param(_hooked("resources", "gpu", 1), ConfigError,
                 "unknown resource 'gpu' (did you mean 'gpus'?); valid: cpus, gpu_type, gpus, mem, nodes, tasks_per_node, time, torchrun",
                 id="hook-unknown-resource"),
    pytest.param(_hooked("resources", "mem", 4.5), ConfigError,
                 "resource mem must be a str like '4G' or None, got 4.5", id="hook-mem-float"),
    pytest.param(_hooked("resources", "mem", "4 gigs", launcher=_slurm), ConfigError,
                 "resource mem '4 gigs': expected a size like 512M, 24G or 1.5T",
                 id="hook-slurm-mem"),
    pytest.param(_hooked("resources", "time", "2 hours", launcher=_slurm), ConfigError,
                 "resource time '2 hours': expected a duration like 90m, 2h", id="hook-slurm-time"),
    pytest.param(_hooked("environ", "MY VAR", "x"), ConfigError,
                 "invalid environment variable name 'MY VAR': letters, digits and '_'",
                 id="hook-env-name-with-space"),
    pytest.param(_hooked("environ", "1ST", "x"), ConfigError,
                 "invalid environment variable name '1ST'", id="hook-env-name-digit"),
    pytest.param(_hooked("environ", "COUNT", 3), ConfigError,
                 "environment variable COUNT: expected a str or a Secret, got int",
                 id="hook-env-value-int"),
    pytest.param(_hooked("environ", "NUL", "a\x00b"), ConfigError,
                 "environment variable NUL: the value holds a NUL byte", id="hook-env-nul"),
]


@pytest.mark.parametrize(("build", "expected", "fragment"), EXPERIMENT_CASES)
def test_experiment_inputs(build: Case, expected: type[BaseException], fragment: str,
                           tmp_path: Path, isolated: Path) -> None:
    refused(build, tmp_path, expected, fragment)
    jobs = tmp_path / "ws" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir()), "a refused job left a directory"


def test_a_hook_error_names_the_job(tmp_path, isolated):
    task = Hooked(where="environ", key="MY VAR", value="x")
    with pytest.raises(ConfigError) as caught:
        _in_experiment(task)(tmp_path)
    assert str(caught.value).startswith(f"Hooked/{identifier(task)[:12]}: ")


def test_nothing_is_written_for_a_refused_workspace(tmp_path):
    with pytest.raises(ConfigError):
        _in_a_file(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- launchers -----------------------------------------------------------------------------


LAUNCHER_CASES = [
    pytest.param(lambda t: SlurmLauncher(partition="a b"), ConfigError,
                 "SLURM option '--partition=a b': white space and quotes are not allowed",
                 id="slurm-partition-with-space"),
    pytest.param(lambda t: SlurmLauncher(account="x'y"), ConfigError,
                 "SLURM option \"--account=x'y\": white space and quotes", id="slurm-account-quote"),
    pytest.param(lambda t: SlurmLauncher(time="2 hours"), ConfigError,
                 "resource time '2 hours': expected a duration like 90m, 2h, 1h30m, 1d",
                 id="slurm-time-in-words"),
    pytest.param(lambda t: SlurmLauncher(mem="4 gigs"), ConfigError,
                 "resource mem '4 gigs': expected a size like 512M, 24G", id="slurm-mem-in-words"),
    pytest.param(lambda t: SlurmLauncher().with_(partion="gpu"), ConfigError,
                 "unknown SLURM option 'partion'; valid: account", id="slurm-unknown-option"),
    pytest.param(lambda t: SlurmLauncher(extra={"-x": 1}), ConfigError,
                 "SLURM extra option '-x': expected '--name' (lower case)", id="slurm-extra-short"),
    pytest.param(lambda t: SlurmLauncher(nodes=0), ConfigError,
                 "resource nodes must be a positive int, got 0", id="slurm-zero-nodes"),
    pytest.param(lambda t: SlurmLauncher(cpus=0), ConfigError,
                 "resource cpus must be a positive int, got 0", id="slurm-zero-cpus"),
    pytest.param(lambda t: SlurmLauncher(SSHConnector("me@cluster"), workdir="~/../other"),
                 ConfigError, "SlurmLauncher: workdir '~/../other' must not contain a '..'",
                 id="slurm-remote-workdir-dotdot"),
    pytest.param(lambda t: SSHLauncher(host="me@box", workdir="/scratch/../etc"), ConfigError,
                 "SSHLauncher: workdir '/scratch/../etc' must not contain a '..' component",
                 id="ssh-workdir-dotdot"),
    pytest.param(lambda t: SSHLauncher(host="me@box", workdir="corral"), ConfigError,
                 "SSHLauncher: workdir must be an absolute remote path or start with '~/'",
                 id="ssh-workdir-relative"),
    pytest.param(lambda t: SSHLauncher(workdir="/w"), ConfigError,
                 "SSHLauncher needs connector=SSHConnector(...) or host=...", id="ssh-no-host"),
    pytest.param(lambda t: SSHLauncher(host="me@box", workdir="/w", slots_dir="slots"),
                 ConfigError, "SSHLauncher: slots_dir must be an absolute path, got 'slots'",
                 id="ssh-relative-slots-dir"),
    pytest.param(lambda t: LocalLauncher(cpu_slots=0), ConfigError,
                 "local launcher: cpu_slots must be a positive int, got 0", id="local-zero-cpus"),
    pytest.param(lambda t: LocalLauncher(cancel_grace=-1), ConfigError,
                 "local launcher: cancel_grace must be >= 0, got -1", id="local-negative-grace"),
    pytest.param(lambda t: LocalLauncher(connector=SSHConnector("me@box")), ConfigError,
                 "local launcher: connector must be a LocalConnector, got SSHConnector (for "
                 "another host, use the ssh launcher)", id="local-with-an-ssh-connector"),
    pytest.param(lambda t: SSHConnector("bob@box", user="alice"), ConfigError,
                 "SSH host 'bob@box': user given twice with different values",
                 id="ssh-two-users"),
    pytest.param(lambda t: SSHConnector("box:abc"), ConfigError,
                 "SSH host 'box': port 'abc' is not a number", id="ssh-port-not-a-number"),
    pytest.param(lambda t: SSHConnector("box", host_key_policy="trust"), ConfigError,
                 "host_key_policy 'trust'; valid: reject, accept-new", id="ssh-host-key-policy"),
]


@pytest.mark.parametrize(("build", "expected", "fragment"), LAUNCHER_CASES)
def test_launcher_inputs(build: Case, expected: type[BaseException], fragment: str,
                         tmp_path: Path) -> None:
    refused(build, tmp_path, expected, fragment)


def test_a_remote_workdir_is_accepted_without_dotdot():
    SSHLauncher(host="me@box", workdir="~/corral..old/runs")  # '..' inside a name is fine
    SlurmLauncher(SSHConnector("me@cluster"), workdir="/scratch/me/./corral")


# --- hosts files and the finder ------------------------------------------------------------


def _hosts(text: str, *, build: str | None = None) -> Case:
    def make(tmp_path: Path) -> object:
        path = tmp_path / "hosts.toml"
        path.write_text(textwrap.dedent(text))
        config = HostsConfig.read([path])
        return config.build(build, Plugins()) if build else config

    return make


def _not_utf8_hosts(tmp_path: Path) -> object:
    path = tmp_path / "hosts.toml"
    path.write_bytes(b"[hosts.box]\nlauncher = 'local' # caf\xe9\n")
    return HostsConfig.read([path])


def _finder(query: str, declared: str = "cpus = 2") -> Case:
    def make(tmp_path: Path) -> object:
        path = tmp_path / "hosts.toml"
        path.write_text(f"[hosts.box]\nlauncher = 'local'\n[hosts.box.capacity]\n{declared}\n")
        return find_host(query, hosts=HostsConfig.read([path]))

    return make


HOSTS_CASES = [
    pytest.param(_hosts("[hosts.box]\nlauncher = 'local'\ncpus = \n"), ConfigError,
                 "hosts.toml: invalid TOML: Invalid value (at line 3, column 8)",
                 id="toml-syntax-error"),
    pytest.param(_hosts("[hosts.box]\nlauncher = 'local'\ncpu = 2\n", build="box"), ConfigError,
                 "hosts.toml:3: host 'box': unknown key 'cpu' for launcher 'local'; valid: ",
                 id="hosts-unknown-key"),
    pytest.param(_hosts("[hosts.local]\nlauncher = 'local'\n", build="local"), ConfigError,
                 "hosts.toml:1: host 'local' is named like the launcher type 'local'",
                 id="host-named-like-a-launcher"),
    pytest.param(_hosts("[hosts.box]\nlauncher = 'lcoal'\n", build="box"), ConfigError,
                 "hosts.toml:2: host 'box': unknown launcher 'lcoal' (did you mean 'local'?); registered: local, slurm",
                 id="hosts-unknown-launcher"),
    pytest.param(_hosts("[hosts.box]\ncpus = 2\n"), ConfigError,
                 "hosts.toml:1: host 'box' needs launcher = ", id="hosts-no-launcher"),
    pytest.param(_hosts("[hosts.box]\nlauncher = 'local'\n[hosts.box.capacity]\ngpu = 1\n"),
                 ConfigError, "hosts.toml:4: host 'box': unknown capacity 'gpu'; valid: cpus",
                 id="hosts-unknown-capacity"),
    pytest.param(_hosts("[host.box]\nlauncher = 'local'\n"), ConfigError,
                 "hosts.toml:1: unknown top-level key 'host'; valid: hosts", id="hosts-top-key"),
    pytest.param(_hosts("[hosts.box]\nlauncher = 'ssh'\nssh = 'me@box'\nworkdir = '/w/{usr}'\n",
                        build="box"),
                 ConfigError, "hosts.toml:4: unknown placeholder {usr} in '/w/{usr}'; valid: ",
                 id="hosts-unknown-placeholder"),
    pytest.param(_hosts("[hosts.box]\nlauncher = 'ssh'\nssh = 'me@box'\nworkdir = '/w/../x'\n",
                        build="box"),
                 ConfigError, "hosts.toml:1: host 'box': SSHLauncher: workdir '/w/../x' must "
                 "not contain a '..'", id="hosts-workdir-dotdot"),
    pytest.param(_not_utf8_hosts, ConfigError, "cannot read hosts file", id="hosts-not-utf8"),
    pytest.param(lambda t: corral.launcher("nohost", workspace=t), ConfigError,
                 "unknown host 'nohost'; declared hosts: none (looked in ",
                 id="unknown-host"),
    pytest.param(lambda t: parse_query("gpus>>1"), ConfigError,
                 "launcher query 'gpus>>1': cannot read 'gpus>>1'; expected terms KEY OP VALUE",
                 id="query-double-operator"),
    pytest.param(lambda t: parse_query("gpu>=1"), ConfigError,
                 "launcher query 'gpu>=1': unknown key 'gpu'; valid: cpus, gpus",
                 id="query-unknown-key"),
    pytest.param(lambda t: parse_query("mem>=lots"), ConfigError,
                 "mem 'lots': expected a size like 512M, 24G or 1.5T", id="query-bad-size"),
    pytest.param(lambda t: parse_query("gpus=1.5"), ConfigError,
                 "gpus '1.5': expected a whole number >= 0", id="query-fractional-count"),
    pytest.param(lambda t: parse_query("cpus>=1 &"), ConfigError,
                 "launcher query 'cpus>=1 &': cannot read ''", id="query-dangling-and"),
    pytest.param(lambda t: parse_query("  "), ConfigError, "empty launcher query; expected",
                 id="query-empty"),
    pytest.param(_finder("mem>=4G", declared="mem = 'lots'"), ConfigError,
                 "hosts.toml:4: host 'box': mem 'lots': expected a size", id="declared-bad-size"),
    pytest.param(_finder("cpus>=4"), ConfigError,
                 "no host matches 'cpus>=4': box: cpus = 2; the job needs 4 or more",
                 id="query-no-host-fits"),
]


@pytest.mark.parametrize(("build", "expected", "fragment"), HOSTS_CASES)
def test_hosts_and_finder_inputs(build: Case, expected: type[BaseException], fragment: str,
                                 tmp_path: Path, isolated: Path) -> None:
    refused(build, tmp_path, expected, fragment)


def test_a_file_that_is_not_utf8_is_a_connector_error(tmp_path):
    path = tmp_path / "params.json"
    path.write_bytes(b'{"a": "caf\xe9"}')
    with pytest.raises(ConnectorError) as caught:
        LocalConnector().read_text(path)
    check(caught.value, ConnectorError, f"{path} is not UTF-8 text (byte 0xe9 at offset 10")


def test_command_output_that_is_not_utf8_is_replaced():
    result = LocalConnector().run(["printf", "caf\\351\\n"])
    assert result.stdout == "caf\ufffd\n"


# --- the command line ----------------------------------------------------------------------


def _workspace(tmp_path: Path) -> Path:
    """A workspace with two jobs whose identities share the prefix ``ab``."""
    for ident in ("ab" + "1" * 62, "ab" + "2" * 62):
        (tmp_path / "ws" / "jobs" / "pkg.Learn" / ident).mkdir(parents=True)
    return tmp_path / "ws"


CLI_CASES = [
    pytest.param(["jobs", "show", "-w", "{ws}", "ff"], 1,
                 "no job 'ff' in {ws}; jobs there: Learn/ab1111111111, Learn/ab2222222222",
                 id="cli-unknown-job-id"),
    pytest.param(["jobs", "show", "-w", "{ws}", "ab"], 1,
                 "job id 'ab' is ambiguous: Learn/ab11111111111111, Learn/ab22222222222222",
                 id="cli-ambiguous-job-id"),
    pytest.param(["jobs", "log", "-w", "{ws}", "Eval/ab"], 1, "no job 'Eval/ab' in {ws}",
                 id="cli-log-wrong-task"),
    pytest.param(["jobs", "ls", "-w", "{ws}", "--since", "nonsense"], 1,
                 "--since 'nonsense': give a span (45s, 30m, 2h, 1d, 1w) or an ISO date",
                 id="cli-since-nonsense"),
    pytest.param(["jobs", "ls", "-w", "{tmp}/missing"], 1,
                 "no workspace at {tmp}/missing (from --workspace; give --workspace/-w DIR",
                 id="cli-missing-workspace"),
    pytest.param(["xp", "ls", "-w", "{tmp}/missing"], 1, "no workspace at {tmp}/missing",
                 id="cli-xp-missing-workspace"),
    pytest.param(["xp", "wait", "-w", "{ws}", "nope"], 1,
                 "no experiment 'nope' in {ws} (experiments: none)", id="cli-unknown-experiment"),
    pytest.param(["find", "gpus>>1"], 1, "launcher query 'gpus>>1': cannot read 'gpus>>1'",
                 id="cli-find-bad-query"),
    pytest.param(["dry-run", "missing.py"], 1,
                 "dry-run: no script missing.py; give an experiment script file",
                 id="cli-dry-run-missing-script"),
    pytest.param(["dry-run", "{ws}"], 2, "Invalid value for 'SCRIPT': File '{ws}' is a directory",
                 id="cli-dry-run-directory"),
    pytest.param(["jobs", "ls", "-w", "{ws}", "--state", "bogus"], 2,
                 "Invalid value for '--state': 'bogus' is not one of 'created'",
                 id="cli-unknown-state"),
]


def _format(text: str, tmp_path: Path) -> str:
    return text.format(ws=tmp_path / "ws", tmp=tmp_path)


@pytest.mark.parametrize(("args", "code", "fragment"), CLI_CASES)
def test_cli_inputs(args: list[str], code: int, fragment: str, tmp_path: Path,
                    isolated: Path) -> None:
    _workspace(tmp_path)
    result = CliRunner().invoke(cli, [_format(a, tmp_path) for a in args])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if code == 1:  # a CorralError: exactly one line
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("corral: error: ")
    assert _format(fragment, tmp_path) in result.stderr.replace("\n", " ")


def test_cli_check_an_undeclared_host(tmp_path, isolated):
    result = CliRunner().invoke(cli, ["check", "nohost"])
    assert result.exit_code == 1
    (fail,) = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert "config" in fail and "unknown host 'nohost'; declared: none (looked in " in fail


def test_cli_a_malformed_hosts_file_is_one_line(tmp_path, isolated):
    hosts = tmp_path / "xdg" / "corral" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text("[hosts.box]\nlauncher = 'local'\ncpus = = 2\n")
    result = CliRunner().invoke(cli, ["find", "cpus>=1"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"corral: error: {hosts}: invalid TOML: Invalid value (at line 3, column 8)\n"
    )
