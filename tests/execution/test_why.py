"""``corral.ops.explain`` and ``corral why``: which params make a config a new job."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral import ConfigError, experiment, explain
from corral.cli import cli
from corral.launchers.local import LocalLauncher

REPO = Path(__file__).resolve().parents[2]

MODULE = '''
from corral import Config, Meta, Param, Task


class Model(Config):
    hidden: Param[int] = {hidden}
    layers: Param[int] = {layers}
{extra}

class Learn(Task):
    model: Param[Model]
    lr: Param[float] = 0.1
    comment: Meta[str] = ""

    def execute(self):
        pass


def big():
    return Learn(model=Model(hidden=256))
'''


class Module:
    """A task module whose defaults the test changes between submissions."""

    def __init__(self, root: Path) -> None:
        self.name = f"whyproj_{uuid.uuid4().hex[:10]}"
        self.path = root / f"{self.name}.py"
        self.root = root

    def write(self, hidden: int = 128, layers: int = 2, extra: str = ""):
        self.path.write_text(MODULE.format(hidden=hidden, layers=layers, extra=extra))
        if self.name in sys.modules:
            return importlib.reload(sys.modules[self.name])
        return importlib.import_module(self.name)


@pytest.fixture
def module(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    sys.path.insert(0, str(root))
    mod = Module(root)
    yield mod
    sys.path.remove(str(root))
    sys.modules.pop(mod.name, None)


def run(workspace, tmp_path, *configs) -> None:
    with experiment(workspace, "why", launcher=LocalLauncher(cpu_slots=2, slots_dir=tmp_path / "s")):
        for config in configs:
            config.submit()


def lines(explanation) -> list[str]:
    return [line.strip() for line in str(explanation).splitlines()[1:]]


def test_a_changed_param_is_shown_against_the_closest_job(module, workspace, tmp_path):
    m = module.write()
    run(workspace, tmp_path, m.Learn(model=m.Model(hidden=64)), m.Learn(model=m.Model(), lr=0.5))
    found = explain(m.big(), against=workspace)
    assert found.would_run and found.match is None and found.candidates == 2
    assert found.closest is not None and found.closest.name.startswith("Learn/")
    assert str(found).splitlines()[0].startswith(
        f"Learn/{found.identifier[:12]}: no job in {workspace} has this identity; closest of 2 "
        f"Learn job(s): {found.closest.name} (done)"
    )
    assert lines(found) == ["model.hidden: 64 → 256"]  # the job with hidden=64, not lr=0.5


def test_a_changed_default_is_told_apart_from_a_changed_value(module, workspace, tmp_path):
    m = module.write()
    run(workspace, tmp_path, m.Learn(model=m.Model()))
    m = module.write(hidden=256, extra="    dropout: Param[float] = 0.5\n    width: Param[int] = 1")
    found = explain(m.Learn(model=m.Model(width=3), lr=0.2, comment="x"), against=workspace)
    assert lines(found) == [
        "model.hidden: 128 → 256  (its default changed; left at its default, so not in the "
        "identity)",
        "+ model.dropout: 0.5  (new param, at its default: not in the identity)",
        "+ model.width: 3  (new param)",
        "lr: 0.1 → 0.2",
        "comment: '' → 'x'  (meta: not in the identity)",
    ]
    assert [d.identity for d in found.differences] == [False, False, True, True, False]


def test_a_value_that_became_or_stopped_being_the_default_changes_the_identity(
    module, workspace, tmp_path
):
    m = module.write()
    run(workspace, tmp_path, m.Learn(model=m.Model(layers=3)))
    m = module.write(layers=3)  # the value set is now the default
    found = explain(m.Learn(model=m.Model(layers=3)), against=workspace)
    assert found.match is None
    assert lines(found) == ["model.layers: 3  (now the default: left out of the identity)"]
    assert found.differences[0].identity

    other = tmp_path / "other"
    m = module.write()
    run(other, tmp_path, m.Learn(model=m.Model()))
    m = module.write(layers=5)  # the default the job had is set explicitly now
    found = explain(m.Learn(model=m.Model(layers=2)), against=other)
    assert lines(found) == ["model.layers: 2  (no longer the default: now in the identity)"]


def test_a_config_matching_a_job_says_so_and_notes_changed_defaults(module, workspace, tmp_path):
    m = module.write()
    run(workspace, tmp_path, m.Learn(model=m.Model()))
    found = explain(m.Learn(model=m.Model()), against=workspace)
    assert found.match is not None and not found.would_run and found.differences == []
    assert str(found) == (
        f"Learn/{found.identifier[:12]}: matches job {found.match.name} (done): it would not "
        "run again"
    )
    m = module.write(layers=4)
    found = explain(m.Learn(model=m.Model()), against=workspace)
    assert found.match is not None
    assert lines(found) == [
        "values that differ but are not in the identity:",
        "model.layers: 2 → 4  (its default changed; left at its default, so not in the identity)",
    ]


def test_no_job_of_the_task_and_bad_inputs(module, workspace, tmp_path):
    m = module.write()
    workspace.mkdir()
    found = explain(m.big(), against=workspace)
    assert found.closest is None and found.would_run
    unreadable = workspace / "jobs" / found.type_id / ("0" * 64)  # not a params.json we know
    unreadable.mkdir(parents=True)
    (unreadable / "params.json").write_text('{"objects": [{"no": "fields"}], "root": 0}')
    assert explain(m.big(), against=workspace).closest is None
    (unreadable / "params.json").unlink()
    unreadable.rmdir()
    assert str(found) == f"Learn/{found.identifier[:12]}: new: no Learn job in {workspace} to " \
        "compare with"
    with pytest.raises(ConfigError, match="explain\\(\\) takes a Config, got int"):
        explain(3, against=workspace)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="explain: no workspace at /no/where"):
        explain(m.big(), against="/no/where")


def corral(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_why_a_config_by_module_and_name(module, workspace, tmp_path, monkeypatch):
    m = module.write()
    run(workspace, tmp_path, m.Learn(model=m.Model()))
    code, out, _ = corral("why", "-w", str(workspace), f"{module.name}:big")
    assert code == 0
    assert out.splitlines()[1:] == ["  model.hidden: 128 → 256"]
    code, out, _ = corral("why", "-w", str(workspace), f"{module.path}:big")
    assert code == 0 and out.splitlines()[1:] == ["  model.hidden: 128 → 256"]


@pytest.mark.parametrize(("args", "message"), [
    (["-w", "WS", "nothing"], "why: 'nothing': give a script (SCRIPT.py [ARGS...]) or a config "
                              "as MODULE:NAME or FILE.py:NAME"),
    (["-w", "WS", "no_such_module_x:cfg"], "why: cannot import no_such_module_x: No module named"),
    (["-w", "WS", "os:nope"], "why: os has no 'nope'"),
    (["-w", "WS", "os:sep"], "why: os:sep is a str, not a Config"),
    (["-w", "WS", "os:sep", "extra"], "why: arguments 'extra' go with a script, not a config"),
    (["-w", "WS", "sweep.py"], "why: --workspace is for a config; a script names its own"),
    (["missing.py"], "why: no script missing.py"),
    (["-w", "/no/where", "os:sep"], "no workspace at /no/where"),
])
def test_why_bad_inputs_are_one_line_errors(args, message, workspace):
    workspace.mkdir()
    args = [str(workspace) if a == "WS" else a for a in args]
    code, _, err = corral("why", *args)
    assert code == 1 and err.startswith(f"corral: error: {message}") and err.count("\n") == 1


def test_why_a_script_explains_each_job_that_would_run(module, tmp_path):
    m = module.write()
    script = module.root / "sweep.py"
    script.write_text(textwrap.dedent(f'''
        import sys
        from corral import experiment
        from {module.name} import Learn, Model

        if __name__ == "__main__":
            with experiment(sys.argv[1], "sweep"):
                for hidden in map(int, sys.argv[2:]):
                    Learn(model=Model(hidden=hidden)).submit()
    '''))
    workspace = module.root / "ws"
    run(workspace, tmp_path, m.Learn(model=m.Model()))
    env = {**os.environ, "PYTHONPATH": f"{module.root}{os.pathsep}{REPO}"}
    result = CliRunner().invoke(cli, ["why", str(script), str(workspace), "128", "64"], env=env)
    assert result.exit_code == 0, result.output
    blocks = result.stdout.strip().split("\n\n")
    assert len(blocks) == 2  # the done job is not explained; then the dry run's summary
    assert blocks[0].splitlines()[1:] == ["  model.hidden: 128 → 64"]
    assert blocks[1] == "dry run of 'sweep': 2 job(s), 1 done already; nothing was written or " \
        "started"
    assert len(list((workspace / "jobs").glob("*/*"))) == 1  # a dry run: nothing written
