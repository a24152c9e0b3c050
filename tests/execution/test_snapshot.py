"""Code snapshots and provenance on the local launcher: jobs run the code of their submission."""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral import ConfigError, JobFailedError, experiment
from corral.cli import cli
from corral.core import snapshot
from corral.core.workspace import read_json
from corral.launchers.local import LocalLauncher
from tests.execution.tasks import Record

REPO = Path(__file__).resolve().parents[2]

TASKS = '''
import json, time
from pathlib import Path
from corral import Meta, Param, Task

VERSION = "old"


def report(out):
    Path(out).write_text(json.dumps({"version": VERSION, "file": __file__}))


class Gate(Task):
    """Waits until its flag file exists."""
    flag: Meta[str]
    def execute(self):
        while not Path(self.flag).exists():
            time.sleep(0.05)


class Edit(Task):
    """Edits the project it comes from, as a developer would while jobs wait."""
    target: Meta[str]
    def execute(self):
        p = Path(self.target)
        p.write_text(p.read_text().replace('VERSION = "old"', 'VERSION = "new"'))


class Report(Task):
    """Writes the version of its module and where it was imported from."""
    name: Param[str]
    out: Meta[str]
    def execute(self):
        report(self.out)


class ReportAfter(Task):
    gate: Param[Gate]
    out: Meta[str]
    def execute(self):
        report(self.out)


class AfterEdit(Task):
    edit: Param[Edit]
    out: Meta[str]
    def execute(self):
        report(self.out)
'''


AFTER_RECORD = '''
from corral import Meta, Param, Task
from tests.execution.tasks import Record
from .tasks import report


class AfterRecord(Task):
    before: Param[Record]
    out: Meta[str]
    def execute(self):
        report(self.out)
'''


class Project:
    """A project outside any git work tree, importable here as ``<package>.tasks``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.package = f"snapproj_{uuid.uuid4().hex[:10]}"
        self.tasks_file = root / self.package / "tasks.py"
        self.tasks_file.parent.mkdir(parents=True)
        (self.tasks_file.parent / "__init__.py").write_text("")
        self.tasks_file.write_text(TASKS)
        (self.tasks_file.parent / "after_record.py").write_text(AFTER_RECORD)

    def module(self, name: str = "tasks"):
        return importlib.import_module(f"{self.package}.{name}")

    def edit(self) -> None:
        text = self.tasks_file.read_text()
        self.tasks_file.write_text(text.replace('VERSION = "old"', 'VERSION = "new"'))


@pytest.fixture
def project(tmp_path):
    proj = Project(tmp_path / "proj")
    sys.path.insert(0, str(proj.root))
    yield proj
    sys.path.remove(str(proj.root))
    for name in [m for m in sys.modules if m.startswith(proj.package)]:
        del sys.modules[name]


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def local(tmp_path: Path) -> LocalLauncher:
    return LocalLauncher(cpu_slots=4, slots_dir=tmp_path / "slots")


def params(job) -> dict:
    return json.loads((job.directory / "params.json").read_text())


def test_a_job_waiting_on_a_dependency_runs_the_code_of_its_submission(project, workspace,
                                                                        tmp_path):
    tasks = project.module()
    flag, out = tmp_path / "flag", tmp_path / "out.json"
    with experiment(workspace, "edit", launcher=local(tmp_path), wait=False) as xp:
        gate = tasks.Gate(flag=str(flag))
        gate.submit()
        tasks.ReportAfter(gate=gate, out=str(out)).submit()
    project.edit()  # both jobs are started; the second has not imported anything yet
    flag.touch()
    wait_for(out)
    result = json.loads(out.read_text())
    assert result["version"] == "old"
    (digest,) = {params(j)["snapshot"]["hash"] for j in xp.jobs.values()}
    assert result["file"] == str(
        workspace / "code" / digest / "proj" / project.package / "tasks.py"
    )


def test_without_a_snapshot_the_same_job_runs_the_edited_code(project, workspace, tmp_path):
    tasks = project.module()
    flag, out = tmp_path / "flag", tmp_path / "out.json"
    with experiment(workspace, "live", launcher=local(tmp_path), wait=False,
                    snapshot=False) as xp:
        gate = tasks.Gate(flag=str(flag))
        gate.submit()
        tasks.ReportAfter(gate=gate, out=str(out)).submit()
    project.edit()
    flag.touch()
    wait_for(out)
    assert json.loads(out.read_text()) == {"version": "new", "file": str(project.tasks_file)}
    assert all("snapshot" not in params(j) for j in xp.jobs.values())
    assert not (workspace / "code").exists()


def test_a_job_started_after_the_project_changed_still_runs_the_submitted_code(
    project, workspace, tmp_path
):
    tasks = project.module()
    out = tmp_path / "out.json"
    with experiment(workspace, "later", launcher=local(tmp_path)):
        edit = tasks.Edit(target=str(project.tasks_file))  # runs first, edits the project
        edit.submit()
        tasks.AfterEdit(edit=edit, out=str(out)).submit()  # its files are written after
    assert 'VERSION = "new"' in project.tasks_file.read_text()
    assert json.loads(out.read_text())["version"] == "old"


def test_one_snapshot_per_experiment_and_per_distinct_tree(project, workspace, tmp_path,
                                                           monkeypatch):
    calls = []
    real = snapshot.collect
    monkeypatch.setattr(snapshot, "collect", lambda *a: calls.append(a[0]) or real(*a))
    tasks = project.module()
    for run in range(2):
        with experiment(workspace, "dedup", launcher=local(tmp_path)) as xp:
            for i in range(5):
                tasks.Report(name=f"r{run}-{i}", out=str(tmp_path / f"{run}-{i}")).submit()
    assert calls == [project.root, project.root]  # once per experiment, not per task
    stored = [p for p in (workspace / "code").iterdir() if p.is_dir()]
    assert [p.name for p in stored] == [params(j)["snapshot"]["hash"] for j in xp.jobs.values()][:1]
    files = sorted(p.relative_to(stored[0]).as_posix() for p in stored[0].rglob("*.py"))
    assert files == [f"proj/{project.package}/{name}.py"
                     for name in ("__init__", "after_record", "tasks")]
    assert os.stat(stored[0] / "proj" / project.package / "tasks.py").st_mode & 0o222 == 0
    assert not list((workspace / "code").glob(".tmp-*"))
    project.edit()  # another tree: another snapshot, the first one untouched
    with experiment(workspace, "dedup", launcher=local(tmp_path)):
        tasks.Report(name="edited", out=str(tmp_path / "edited")).submit()
    assert len([p for p in (workspace / "code").iterdir() if p.is_dir()]) == 2


def test_the_corral_package_and_the_workspace_are_never_in_a_snapshot(workspace, tmp_path, log):
    with experiment(workspace, "repo", launcher=local(tmp_path)) as xp:
        Record(name="r", log=log).submit()
    (job,) = xp.jobs.values()
    snap = params(job)["snapshot"]
    assert snap["roots"] == [{"path": str(REPO), "dir": REPO.name}]
    stored = workspace / "code" / snap["hash"] / REPO.name
    assert (stored / "tests" / "execution" / "tasks.py").is_file()
    assert not (stored / "corral").exists()
    assert read_json(job.directory / ".corral" / "done") is not None


def test_a_class_of_the_experiment_script_imports_from_the_snapshot(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    script = project / "run_xp.py"
    script.write_text(textwrap.dedent('''
        import json, sys
        from pathlib import Path
        from corral import Meta, Task, experiment

        class Where(Task):
            out: Meta[str]
            def execute(self):
                Path(self.out).write_text(sys.modules[type(self).__module__].__file__)

        if __name__ == "__main__":
            with experiment(sys.argv[1], "script"):  # the workspace is inside the project
                Where(out=sys.argv[2]).submit()
    '''))
    out = tmp_path / "where"
    subprocess.run([sys.executable, str(script), str(project / "ws"), str(out)], check=True,
                   cwd=project, env={**os.environ, "PYTHONPATH": str(REPO)})
    (digest,) = [p.name for p in (project / "ws" / "code").iterdir() if p.is_dir()]
    assert out.read_text() == str(project / "ws" / "code" / digest / "proj" / "run_xp.py")
    stored = project / "ws" / "code" / digest
    assert [p.relative_to(stored).as_posix() for p in stored.rglob("*.py")] == ["proj/run_xp.py"]


def test_explicit_paths_are_the_snapshot(project, workspace, tmp_path):
    tasks = project.module()
    out = tmp_path / "out.json"
    with experiment(workspace, "explicit", launcher=local(tmp_path),
                    snapshot=[project.root / project.package]) as xp:
        tasks.Report(name="e", out=str(out)).submit()
    (job,) = xp.jobs.values()
    snap = params(job)["snapshot"]
    assert snap["roots"] == [{"path": str(project.root / project.package), "dir": project.package}]
    # the package's own directory was copied; the job still imports it from the live root
    assert json.loads(out.read_text())["file"] == str(project.tasks_file)


@pytest.mark.parametrize(("value", "message"), [
    ("src", "snapshot: expected True, False or a list of paths, got str"),
    ([], "snapshot: an empty list of paths"),
    (["/no/such/dir"], "snapshot path /no/such/dir does not exist"),
    ([3], "snapshot: expected paths (str or Path), got 3"),
])
def test_bad_snapshot_options_are_one_line_errors(workspace, value, message):
    with pytest.raises(ConfigError) as e:
        with experiment(workspace, "bad", snapshot=value):
            pass
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_huge_tree_is_refused_with_a_way_out(project, workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "MAX_FILES", 1)
    tasks = project.module()
    with pytest.raises(ConfigError) as e:
        with experiment(workspace, "huge", launcher=local(tmp_path)):
            tasks.Report(name="h", out=str(tmp_path / "h")).submit()
    message = str(e.value)
    assert message.startswith(f"code snapshot of {project.root}: more than 1 Python files")
    assert "snapshot=False" in message and "snapshot=[...]" in message and "\n" not in message
    monkeypatch.setattr(snapshot, "MAX_FILES", 5000)
    monkeypatch.setattr(snapshot, "MAX_BYTES", 10)
    with pytest.raises(ConfigError, match="more than 0 MB of Python files"):
        with experiment(workspace, "huge", launcher=local(tmp_path)):
            tasks.Report(name="h", out=str(tmp_path / "h")).submit()


def test_a_removed_snapshot_fails_the_job_with_an_import_reason(project, workspace, tmp_path,
                                                                 log):
    tasks = project.module("after_record")
    with pytest.raises(JobFailedError) as e:
        with experiment(workspace, "gone", launcher=local(tmp_path)) as xp:
            first = Record(name="first", sleep=1.0, log=log)  # other roots: another snapshot
            first.submit()
            tasks.AfterRecord(before=first, out=str(tmp_path / "o")).submit()
            (second,) = [j for j in xp.jobs.values() if j.task is not first]
            assert second.snapshot is not None
            shutil.rmtree(second.snapshot.store)  # before the job's files are written
    (failure,) = e.value.failures
    assert failure.reason == "import"
    assert failure.message.startswith(
        f"ImportError: the code snapshot {second.snapshot.store} is missing (removed by corral gc?)"
    )


# --- what is collected -------------------------------------------------------------------------


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def write(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")


def test_in_a_git_work_tree_tracked_and_untracked_not_ignored_python_files(tmp_path):
    root = tmp_path / "repo"
    write(root, "pkg/__init__.py", "pkg/a.py", "README.md", ".gitignore")
    (root / ".gitignore").write_text("ignored.py\nbuild/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    write(root, "pkg/new.py", "ignored.py", "build/gen.py", "pkg/data.txt", "ws/code/x.py")
    files = snapshot.collect(root, [root / "ws"])
    assert sorted(files) == ["pkg/__init__.py", "pkg/a.py", "pkg/new.py"]
    assert files["pkg/a.py"] == b"# pkg/a.py\n"


def test_outside_git_every_python_file_but_hidden_caches_and_virtualenvs(tmp_path):
    root = tmp_path / "plain"
    write(root, "pkg/__init__.py", "pkg/a.py", ".hidden/h.py", "pkg/__pycache__/c.py",
          "venv/pyvenv.cfg", "venv/lib/x.py", "notes.txt", "top.py")
    assert sorted(snapshot.collect(root)) == ["pkg/__init__.py", "pkg/a.py", "top.py"]


def test_the_hash_covers_paths_and_contents():
    base = {"a/x.py": b"1", "a/y.py": b"2"}
    assert snapshot.digest(base) == snapshot.digest(dict(reversed(base.items())))
    assert snapshot.digest(base) != snapshot.digest({"a/x.py": b"1", "a/z.py": b"2"})
    assert snapshot.digest(base) != snapshot.digest({"a/x.py": b"1", "a/y.py": b"3"})


def test_a_packed_snapshot_installs_the_same_tree(tmp_path):
    stored = snapshot.store(tmp_path / "code", "h" * 64, {"m/a.py": b"x", "m/p/b.py": b"y"})
    (stored / "m" / "__pycache__").mkdir()
    (stored / "m" / "__pycache__" / "a.pyc").write_bytes(b"cache")
    target = tmp_path / "remote" / "code" / ("h" * 64)
    snapshot.install({"dir": str(target), "archive": snapshot.pack(stored)})
    assert snapshot.read_store(target) == {"m/a.py": b"x", "m/p/b.py": b"y"}
    snapshot.install({"dir": str(target), "archive": "not even base64"})  # there: untouched
    local = tmp_path / "workdir" / "code" / ("h" * 64)  # this machine, another workdir
    snapshot.install({"dir": str(local), "source": str(stored)})
    assert snapshot.read_store(local) == {"m/a.py": b"x", "m/p/b.py": b"y"}
    with pytest.raises(ValueError, match="refusing member '../evil.py'"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("../evil.py")
            tar.addfile(info, io.BytesIO(b""))
        snapshot.unpack(base64.b64encode(buffer.getvalue()).decode())


# --- provenance ------------------------------------------------------------------------------


def test_provenance_records_versions_git_snapshot_launcher_and_resources(tmp_path, workspace):
    root = tmp_path / "repo"
    root.mkdir()
    package = f"provproj_{uuid.uuid4().hex[:8]}"
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "tasks.py").write_text(
        "from corral import Param, Task\n\nclass Noop(Task):\n    n: Param[int]\n\n"
        "    def execute(self):\n        pass\n"
    )
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    sys.path.insert(0, str(root))
    try:
        tasks = importlib.import_module(f"{package}.tasks")
        with experiment(workspace, "prov", launcher=local(tmp_path)) as xp:
            tasks.Noop(n=1).submit()
        (root / package / "tasks.py").write_text("# edited\n" + (root / package / "tasks.py")
                                                 .read_text())
        with experiment(workspace, "prov", launcher=local(tmp_path)) as xp2:
            tasks.Noop(n=2).submit()
    finally:
        sys.path.remove(str(root))
    (clean,), (dirty,) = xp.jobs.values(), xp2.jobs.values()
    record = json.loads((clean.directory / ".corral" / "provenance.json").read_text())
    from corral import __version__

    assert record["corral"] == __version__
    assert record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["roots"] == [{"path": str(root), "commit": commit, "dirty": False}]
    assert record["snapshot"] == params(clean)["snapshot"]["hash"]
    assert record["launcher"] == "local" and record["location"].endswith(str(workspace))
    assert record["resources"] == {"cpus": 1, "gpus": 0, "gpu_type": None, "mem": None,
                                   "time": None, "nodes": 1, "tasks_per_node": 1,
                                   "torchrun": False}
    assert record["experiment"] == "prov" and abs(record["submitted"] - time.time()) < 60
    later = json.loads((dirty.directory / ".corral" / "provenance.json").read_text())
    assert later["roots"][0]["dirty"] is True and later["snapshot"] != record["snapshot"]

    out = CliRunner().invoke(cli, ["jobs", "show", clean.identifier[:10], "-w", str(workspace)],
                             catch_exceptions=False).output
    shown = out[out.index("provenance:"):]
    assert f"corral     {__version__}, python {record['python']}" in shown
    assert f"snapshot   code/{record['snapshot']}" in shown
    assert f"project    {root}: git {commit[:12]}\n" in shown
    assert "resources  cpus=1 gpus=0" in shown and "launcher   local at local:" in shown
