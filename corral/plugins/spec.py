"""Every hook of corral, declared once; implement them with ``corral.plugins.markers.hookimpl``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.plugins.markers import hookspec

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.job import Job, JobState
    from corral.core.launcher import Launcher
    from corral.plugins.registry import Registry


@hookspec
def corral_register_launchers(registry: Registry[Launcher]) -> None:
    """Register launcher classes with ``registry.add(cls)``, keyed by ``cls.name``.

    :param registry: the launcher registry; a duplicate name raises ``PluginError``.
    """


@hookspec
def corral_register_connectors(registry: Registry[Connector]) -> None:
    """Register connector classes with ``registry.add(cls)``, keyed by ``cls.name``.

    :param registry: the connector registry; a duplicate name raises ``PluginError``.
    """


@hookspec
def corral_prepare_job(job: Job, launcher: Launcher) -> None:
    """Adjust a job before it is submitted, after the configs' own ``SubmitHook``s.

    :param job: the job; change ``job.environ`` and ``job.resources`` here.
    :param launcher: the launcher that will run it.
    """


@hookspec
def corral_job_finished(job: Job, state: JobState) -> None:
    """Be told that a job reached a final state (done or failed).

    :param job: the job.
    :param state: its final state; ``job.failure`` says why when it failed.
    """
