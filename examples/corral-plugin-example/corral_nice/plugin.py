"""The ``nice`` launcher and its registration (entry point ``corral: nice``)."""

from __future__ import annotations

import shutil

from corral import ConfigError, Job, hookimpl
from corral.launchers import LocalLauncher


class NiceLauncher(LocalLauncher):
    """The local launcher, with every job under ``nice -n niceness`` and idle-class ionice.

    :param niceness: 0 (normal) to 19 (lowest priority); default 10.
    Other arguments are the local launcher's (``cpus``, ``gpus``, ``python``).
    """

    name = "nice"

    def __init__(self, *, niceness: int = 10, **options: object) -> None:
        if not isinstance(niceness, int) or not 0 <= niceness <= 19:
            raise ConfigError(f"nice launcher: niceness must be an int in 0..19, got {niceness!r}")
        super().__init__(**options)  # type: ignore[arg-type]
        self.niceness = niceness

    def command(self, job: Job) -> list[str]:
        """``nice`` (and ``ionice``) exec the job script, so the pid stays the job's."""
        argv = ["nice", "-n", str(self.niceness)]
        if shutil.which("ionice"):
            argv += ["ionice", "-c", "3"]
        return argv + super().command(job)


@hookimpl
def corral_register_launchers(registry):
    """Register the ``nice`` launcher."""
    registry.add(NiceLauncher)
