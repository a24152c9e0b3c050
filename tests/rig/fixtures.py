"""pytest wiring for the test rig (``tests/rig/rig.sh``): facts, fixtures, markers.

The rig writes what a test needs into ``<rig dir>/rig.env`` (``CORRAL_RIG_DIR``, default
``<repo>/.rig``). A test that needs the rig, through a fixture (``rig``, ``ssh_host``,
``ssh_host2``, ``slurm_cluster``) or a marker (``ssh``, ``slurm``, ``sacct``, ``no_sacct``,
``cgroup``), is skipped when the rig is not up, or not in the mode it needs, and **fails**
instead under ``CI=true``: CI must never pass by skipping what it is meant to check.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RIG_SH = REPO / "tests" / "rig" / "rig.sh"
START_HINT = "start it with: sudo bash tests/rig/rig.sh up [--mode squeue|sacct|cgroup]"

# Markers beyond pyproject's `ssh` and `slurm`: what a test needs of the rig's mode.
MODE_MARKERS = {
    "sacct": "needs SLURM accounting: slurmdbd (rig mode sacct)",
    "no_sacct": "needs a cluster without accounting, the squeue-only path (rig mode squeue)",
    "cgroup": "needs enforced memory limits (rig mode cgroup)",
    "slow": "waits a minute or more, e.g. for a SLURM time limit",
}
# A test using one of these fixtures gets the matching marker, so `-m slurm` selects it.
FIXTURE_MARKERS = {
    "ssh_host": "ssh", "ssh_host2": "ssh", "logins": "ssh", "slurm_cluster": "slurm", "compute_nodes": "slurm",
}

TERMINAL_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
     "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}
)


class RigUnavailable(Exception):
    """The rig (or the part of it a test needs) is not there."""

    def __init__(self, reason: str, hint: str = START_HINT) -> None:
        super().__init__(reason)
        self.hint = hint


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def rig_dir() -> Path:
    return Path(os.environ.get("CORRAL_RIG_DIR") or REPO / ".rig")


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; ``#`` comments and blank lines ignored; values are not quoted."""
    facts: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if sep:
                facts[key] = value
    return facts


@dataclass(frozen=True)
class SSHHost:
    """One sshd of the rig, reachable with the rig's client key as its test user."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    ssh_config: Path
    alias: str

    def ssh_argv(self, *command: str) -> list[str]:
        """argv for OpenSSH's client through the rig's ``ssh_config`` alias."""
        return ["ssh", "-F", str(self.ssh_config), self.alias, *command]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the host (each word quoted for the remote shell), checked."""
        return subprocess.run(
            self.ssh_argv(shlex.join(argv)), capture_output=True, text=True, timeout=timeout,
            check=True,
        )


@dataclass(frozen=True)
class Login:
    """One sshd of the rig that asks a person something at login, and its own log."""

    alias: str
    port: int
    log: Path

    def accepted(self, method: str) -> int:
        """Logins sshd itself logged as accepted with ``method`` (e.g.
        ``"keyboard-interactive/pam"``, ``"password"``)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count(f"Accepted {method} for ")


@dataclass(frozen=True)
class Logins:
    """The rig's logins that need a person: a key and a TOTP code (PAM's
    google-authenticator), a password (pam_unix), a key with a passphrase; and a second
    local user, who must not use the first one's shared connections."""

    ssh_config: Path
    two_factor: Login
    otp_secret: str
    password_host: Login
    password: str
    passphrase_alias: str
    passphrase_key: Path
    passphrase: str
    key_log: Path
    other_user: str

    def code(self) -> str:
        """The TOTP code valid now."""
        import pyotp

        return str(pyotp.TOTP(self.otp_secret).now())

    def key_logins(self) -> int:
        """Key logins the main sshd logged (where the passphrase-protected key logs in)."""
        text = self.key_log.read_text(errors="replace") if self.key_log.exists() else ""
        return text.count("Accepted publickey for ")


@dataclass(frozen=True)
class SlurmCluster:
    """The rig's one-node cluster, driven with Slurm's own commands."""

    conf: Path
    name: str
    node: str
    partitions: tuple[str, ...]
    default_partition: str
    short_maxtime: str
    sacct: bool
    cgroup: bool

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=60, check=check
        )

    def sbatch(self, *args: str) -> str:
        """Submit with ``sbatch --parsable``; return the job id."""
        return parse_job_id(self.command("sbatch", "--parsable", *args).stdout)

    def states(self, job_id: str) -> dict[str, str]:
        """``{job or array task id: state}`` from ``squeue -t all``; empty once forgotten."""
        out = self.command(
            "squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%i|%T", check=False
        )
        # After MinJobAge squeue exits 1 with "Invalid job id specified": the job is gone
        # from slurmctld's memory, and only the accounting still knows its end.
        states = dict(line.split("|", 1) for line in out.stdout.split())
        if states or not self.sacct:
            return states
        rows = self.command(
            "sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State", check=False
        ).stdout.splitlines()
        # sacct says "CANCELLED by 0": the state is its first word.
        return {
            key: value.split()[0]
            for key, value in (row.split("|", 1) for row in rows if "|" in row)
            if value.split()
        }

    def wait(
        self, job_id: str, timeout: float = 60, until: Iterable[str] = TERMINAL_STATES,
        count: int = 1,
    ) -> dict[str, str]:
        """Poll until ``count`` entries (array tasks) are all in one of the states ``until``."""
        wanted = frozenset(until)
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.states(job_id)
            if len(states) >= count and all(s in wanted for s in states.values()):
                return states
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not in {sorted(wanted)} after {timeout}s: {states}")


@dataclass(frozen=True)
class ComputeNodes:
    """The rig's compute nodes: a slurmd each, in its own network namespace."""

    names: tuple[str, ...]
    addrs: Mapping[str, str]
    netns: Mapping[str, str]
    gpus: Mapping[str, tuple[str, int]]
    """``{node: (gpu type, count)}`` of the nodes with GPUs."""
    cpus_each: int

    def down(self, node: str) -> None:
        """The node dies: its slurmd, slurmstepds and job processes are SIGKILLed."""
        subprocess.run(["bash", str(RIG_SH), "node-down", node], check=True,
                       capture_output=True, text=True, timeout=60)

    def up(self, node: str) -> None:
        """Its slurmd starts again and SLURM takes it back."""
        subprocess.run(["bash", str(RIG_SH), "node-up", node], check=True,
                       capture_output=True, text=True, timeout=120)


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def parse_job_id(parsable: str) -> str:
    """``sbatch --parsable`` prints ``id`` or ``id;cluster``."""
    job_id = parsable.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise ValueError(f"not a job id: {parsable!r}")
    return job_id


@dataclass(frozen=True)
class Rig:
    """What ``rig.sh up`` wrote to ``rig.env``."""

    dir: Path
    mode: str
    python: str
    munge_socket: Path
    ssh: SSHHost
    host2: SSHHost | None
    netns: str | None
    slurm: SlurmCluster
    nodes: ComputeNodes | None
    logins: Logins | None
    facts: Mapping[str, str]

    @classmethod
    def from_env_file(cls, path: Path) -> Rig:
        f = parse_env_file(path)
        ssh_args = {
            "user": f["CORRAL_RIG_SSH_USER"],
            "key": Path(f["CORRAL_RIG_SSH_KEY"]),
            "known_hosts": Path(f["CORRAL_RIG_KNOWN_HOSTS"]),
            "ssh_config": Path(f["CORRAL_RIG_SSH_CONFIG"]),
        }
        host2 = None
        if f.get("CORRAL_RIG_HOST2"):
            host2 = SSHHost(host=f["CORRAL_RIG_HOST2"], port=int(f["CORRAL_RIG_HOST2_PORT"]),
                            alias=f["CORRAL_RIG_HOST2_ALIAS"], **ssh_args)
        partitions = tuple(f["CORRAL_RIG_PARTITIONS"].split(","))
        nodes = None
        if f.get("CORRAL_RIG_COMPUTE_NODES"):
            nodes = ComputeNodes(
                names=tuple(f["CORRAL_RIG_COMPUTE_NODES"].split(",")),
                addrs=_pairs(f["CORRAL_RIG_NODE_ADDRS"]),
                netns=_pairs(f["CORRAL_RIG_NODE_NETNS"]),
                gpus={n: (g.split(":")[0], int(g.split(":")[1]))
                      for n, g in _pairs(f.get("CORRAL_RIG_NODE_GPUS", "")).items()},
                cpus_each=int(f["CORRAL_RIG_NODE_CPUS_EACH"]),
            )
        logins = None
        if f.get("CORRAL_RIG_SSH_2FA_ALIAS"):
            logins = Logins(
                ssh_config=Path(f["CORRAL_RIG_SSH_CONFIG"]),
                two_factor=Login(f["CORRAL_RIG_SSH_2FA_ALIAS"], int(f["CORRAL_RIG_SSH_2FA_PORT"]),
                                 Path(f["CORRAL_RIG_SSH_2FA_LOG"])),
                otp_secret=_secret(f["CORRAL_RIG_OTP_SECRET_FILE"]),
                password_host=Login(f["CORRAL_RIG_SSH_PASSWORD_ALIAS"],
                                    int(f["CORRAL_RIG_SSH_PASSWORD_PORT"]),
                                    Path(f["CORRAL_RIG_SSH_PASSWORD_LOG"])),
                password=_secret(f["CORRAL_RIG_PASSWORD_FILE"]),
                passphrase_alias=f["CORRAL_RIG_SSH_PASSPHRASE_ALIAS"],
                passphrase_key=Path(f["CORRAL_RIG_PASSPHRASE_KEY"]),
                passphrase=_secret(f["CORRAL_RIG_PASSPHRASE_FILE"]),
                key_log=Path(f["CORRAL_RIG_SSH_LOG"]),
                other_user=f["CORRAL_RIG_OTHER_USER"],
            )
        return cls(
            dir=Path(f["CORRAL_RIG_DIR"]),
            mode=f["CORRAL_RIG_MODE"],
            python=f["CORRAL_RIG_PYTHON"],
            munge_socket=Path(f["CORRAL_RIG_MUNGE_SOCKET"]),
            ssh=SSHHost(host=f["CORRAL_RIG_SSH_HOST"], port=int(f["CORRAL_RIG_SSH_PORT"]),
                        alias=f["CORRAL_RIG_SSH_ALIAS"], **ssh_args),
            host2=host2,
            netns=f.get("CORRAL_RIG_NETNS") or None,
            slurm=SlurmCluster(
                conf=Path(f["SLURM_CONF"]),
                name=f["CORRAL_RIG_CLUSTER"],
                node=f["CORRAL_RIG_NODE"],
                partitions=partitions,
                default_partition=f["CORRAL_RIG_DEFAULT_PARTITION"],
                short_maxtime=f["CORRAL_RIG_SHORT_MAXTIME"],
                sacct=f["CORRAL_RIG_SACCT"] == "1",
                cgroup=f["CORRAL_RIG_CGROUP"] == "1",
            ),
            nodes=nodes,
            logins=logins,
            facts=f,
        )


# ---------------------------------------------------------------------------------------------
# Availability checks, each done once per session.

_checked: dict[str, Rig | RigUnavailable] = {}


def _check(what: str) -> Rig:
    if what not in _checked:
        try:
            _checked[what] = _CHECKS[what]()
        except RigUnavailable as exc:
            _checked[what] = exc
    result = _checked[what]
    if isinstance(result, RigUnavailable):
        message = f"{result}; {result.hint}"
        if in_ci():
            pytest.fail(f"test rig required under CI: {message}", pytrace=False)
        pytest.skip(message)
    return result


def _load() -> Rig:
    path = rig_dir() / "rig.env"
    if not path.is_file():
        raise RigUnavailable(f"the test rig is not up (no {path})")
    return Rig.from_env_file(path)


def _secret(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""  # unreadable (not root): the checks report the rig as unusable


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _check_ssh(host: SSHHost) -> None:
    if not _tcp_open(host.host, host.port):
        raise RigUnavailable(f"the rig's sshd at {host.host}:{host.port} does not answer")
    if not os.access(host.key, os.R_OK):
        raise RigUnavailable(f"cannot read the rig's client key {host.key} (run tests as root)")


def _ssh() -> Rig:
    rig = _check("rig")
    _check_ssh(rig.ssh)
    return rig


def _host2() -> Rig:
    rig = _check("ssh")
    if rig.host2 is None:
        raise RigUnavailable("the rig has no second host (no network namespaces here?)")
    _check_ssh(rig.host2)
    return rig


def _slurm() -> Rig:
    rig = _check("rig")
    try:
        ping = rig.slurm.command("scontrol", "ping", check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RigUnavailable(f"scontrol ping failed: {exc}") from exc
    if "UP" not in ping:
        raise RigUnavailable(f"slurmctld does not answer: {ping.strip()!r}")
    return rig


def _nodes() -> Rig:
    rig = _check("slurm")
    if rig.nodes is None:
        raise RigUnavailable(
            "the rig has no compute nodes (started with CORRAL_RIG_NO_NETNS=1?)",
            "restart it with: sudo bash tests/rig/rig.sh down && sudo bash tests/rig/rig.sh up",
        )
    states = rig.slurm.command("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout
    down = [line.split()[0] for line in states.splitlines()
            if line.split()[0] in rig.nodes.names and line.split()[1].rstrip("*~#") in
            ("down", "drain", "drng", "fail")]
    if down:
        raise RigUnavailable(f"compute node(s) {', '.join(down)} are down",
                             "bring them back with: sudo bash tests/rig/rig.sh node-up NODE")
    return rig


def _logins() -> Rig:
    rig = _check("ssh")
    if rig.logins is None:
        raise RigUnavailable(
            "the rig has no two-factor or password sshd (started by an older rig.sh?)",
            "restart it with: sudo bash tests/rig/rig.sh down && sudo bash tests/rig/rig.sh up",
        )
    for login in (rig.logins.two_factor, rig.logins.password_host):
        if not _tcp_open("127.0.0.1", login.port):
            raise RigUnavailable(f"the rig's sshd {login.alias} (port {login.port}) does not answer")
    return rig


def _mode(need: str) -> Rig:
    rig = _check("slurm")
    have = {"sacct": rig.slurm.sacct, "no_sacct": not rig.slurm.sacct, "cgroup": rig.slurm.cgroup}
    mode = {"sacct": "sacct", "no_sacct": "squeue", "cgroup": "cgroup"}[need]
    if not have[need]:
        raise RigUnavailable(
            f"needs the rig in mode {mode}, it runs mode {rig.mode}",
            f"restart it with: sudo bash tests/rig/rig.sh up --mode {mode}",
        )
    return rig


_CHECKS = {
    "rig": _load,
    "ssh": _ssh,
    "host2": _host2,
    "slurm": _slurm,
    "nodes": _nodes,
    "logins": _logins,
    "sacct": lambda: _mode("sacct"),
    "no_sacct": lambda: _mode("no_sacct"),
    "cgroup": lambda: _mode("cgroup"),
}


# ---------------------------------------------------------------------------------------------
# Hooks and fixtures


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MODE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Slow tests (a SLURM time limit, ~1.5 min) last: what they wait for started with their
    # module, and meanwhile the quick tests run.
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
    for item in items:
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
                item.add_marker(marker)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in ("ssh", "slurm", "sacct", "no_sacct", "cgroup"):
        if item.get_closest_marker(marker):
            _check(marker)


@pytest.fixture(scope="session")
def rig() -> Rig:
    """Facts of the running rig; skips (fails under CI=true) when it is not up."""
    return _check("rig")


@pytest.fixture(scope="session")
def ssh_host() -> SSHHost:
    """The rig's sshd on loopback."""
    return _check("ssh").ssh


@pytest.fixture(scope="session")
def ssh_host2() -> SSHHost:
    """The rig's second host: an sshd inside the rig's own network namespace."""
    host2 = _check("host2").host2
    assert host2 is not None
    return host2


@pytest.fixture(scope="session")
def logins() -> Logins:
    """The rig's logins that need a person (two-factor, password, passphrase)."""
    found = _check("logins").logins
    assert found is not None
    return found


@pytest.fixture(scope="session")
def compute_nodes() -> ComputeNodes:
    """The rig's compute nodes (GPUs on n1 and n2; partitions gpu, cpu, low, lowrq, high)."""
    nodes = _check("nodes").nodes
    assert nodes is not None
    return nodes


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The rig's one-node SLURM cluster."""
    return _check("slurm").slurm
