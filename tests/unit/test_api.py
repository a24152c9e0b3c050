"""The public API is pinned: what `from corral import ...` offers."""

from __future__ import annotations

import corral

EXPECTED = {
    "AuthenticationError",
    "Config",
    "ConfigError",
    "ConnectorError",
    "Constant",
    "CorralError",
    "ExperimentStopped",
    "HostKeyError",
    "Job",
    "JobFailedError",
    "JobState",
    "LoginNeeded",
    "Launcher",
    "Meta",
    "Param",
    "PluginError",
    "Plugins",
    "ResumableTask",
    "Secret",
    "SubmissionError",
    "SubmitHook",
    "Task",
    "__version__",
    "cache",
    "dependencies",
    "experiment",
    "explain",
    "field",
    "find_launcher",
    "fitting",
    "hookimpl",
    "identifier",
    "launcher",
    "load_hosts",
    "match_hosts",
    "pathgenerator",
    "submit_hook_decorator",
    "tag",
    # what code ported from experimaestro uses (docs/coming-from-experimaestro.md)
    "CallbackFailed",
    "Choices",
    "LightweightTask",
    "TaskCancelled",
    "copyconfig",
    "stop_tags",
    "partial",
    "partial_identifier",
    "setmeta",
}


def test_all_is_pinned():
    assert set(corral.__all__) == EXPECTED
    for name in corral.__all__:
        assert hasattr(corral, name), name


def test_every_import_line_of_the_seed_page_works():
    exec("from corral import Config, Task, Param", {})
    exec("from corral import SubmitHook, Job, Launcher, submit_hook_decorator", {})
    exec("from corral import cache, experiment", {})
    exec("from corral import Meta, Constant, pathgenerator, field, tag, identifier", {})


def test_job_process_imports_stay_light():
    """The job entry point must not pull in SSH, plugins or the CLI."""
    import subprocess
    import sys

    code = (
        "import sys, corral.run, corral.host.runner, corral.core.serialize;"
        "heavy = {'paramiko', 'fabric', 'pluggy', 'click', 'filelock', 'corral.app.experiment'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exception_tree():
    assert issubclass(corral.ConfigError, corral.CorralError)
    assert issubclass(corral.PluginError, corral.CorralError)
    assert issubclass(corral.AuthenticationError, corral.ConnectorError)
    assert issubclass(corral.HostKeyError, corral.ConnectorError)
    assert issubclass(corral.LoginNeeded, corral.AuthenticationError)
    assert issubclass(corral.SubmissionError, corral.CorralError)
    assert issubclass(corral.JobFailedError, corral.CorralError)


def test_submission_error_keeps_command_and_stderr_tail():
    err = corral.SubmissionError(
        "sbatch failed", argv=["sbatch", "x"], returncode=1, stderr="a\n" * 5000 + "boom"
    )
    assert err.argv == ["sbatch", "x"] and err.returncode == 1
    assert len(err.stderr) == corral.SubmissionError.STDERR_TAIL
    assert str(err) == "sbatch failed (exit code 1; boom)"
