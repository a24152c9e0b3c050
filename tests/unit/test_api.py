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
    "HostKeyError",
    "JobFailedError",
    "Meta",
    "Param",
    "PluginError",
    "SubmissionError",
    "Task",
    "__version__",
    "dependencies",
    "field",
    "identifier",
    "pathgenerator",
    "tag",
}


def test_all_is_pinned():
    assert set(corral.__all__) == EXPECTED
    for name in corral.__all__:
        assert hasattr(corral, name), name


def test_seed_import_lines_of_the_core_work():
    exec("from corral import Config, Task, Param", {})
    exec("from corral import Config, Task, Param, Meta, Constant, pathgenerator, field, tag", {})


def test_exception_tree():
    assert issubclass(corral.ConfigError, corral.CorralError)
    assert issubclass(corral.PluginError, corral.CorralError)
    assert issubclass(corral.AuthenticationError, corral.ConnectorError)
    assert issubclass(corral.HostKeyError, corral.ConnectorError)
    assert issubclass(corral.SubmissionError, corral.CorralError)
    assert issubclass(corral.JobFailedError, corral.CorralError)


def test_submission_error_keeps_command_and_stderr_tail():
    err = corral.SubmissionError(
        "sbatch failed", argv=["sbatch", "x"], returncode=1, stderr="a\n" * 5000 + "boom"
    )
    assert err.argv == ["sbatch", "x"] and err.returncode == 1
    assert len(err.stderr) == corral.SubmissionError.STDERR_TAIL
    assert str(err) == "sbatch failed (exit code 1; boom)"
