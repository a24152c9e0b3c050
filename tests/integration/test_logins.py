"""Logins that need a person, against the rig's real sshds and PAM: a key and a TOTP code
(pam_google_authenticator), a password (pam_unix), a key with a passphrase. Prompts are
answered through a real pseudo-terminal, as a user would; authentications are counted in
sshd's own log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pexpect
import pytest

from corral.connectors.ssh import SSHConnector, close_all
from corral.connectors.ssh_share import holders, shut_all

REPO = Path(__file__).resolve().parents[2]
KBD = "keyboard-interactive/pam"
CODE_PROMPT = "Verification code: "

XP = textwrap.dedent(
    """
    import sys

    from corral import experiment
    from tests.execution.tasks import Record

    host, ws, log, n, sleep = sys.argv[1:6]
    with experiment(ws, "mfa", launcher=host):
        for i in range(int(n)):
            Record(name=f"{host}-{i}", sleep=float(sleep), log=log).submit()
    print("finished", flush=True)
    """
)


@pytest.fixture(autouse=True)
def no_holder():
    close_all()
    shut_all()
    deadline = time.monotonic() + 15
    while holders():
        assert time.monotonic() < deadline, "holders did not leave"
        time.sleep(0.05)
    yield
    close_all()
    shut_all()


class Cluster:
    """The two-factor sshd declared in a hosts file as ``mfa`` (SSH launcher) and
    ``mfa-slurm`` (SLURM through it, as on a login node), with the environment that reads
    it, an experiment script, and a remote log its jobs write."""

    def __init__(self, logins, ssh_host, rig, tmp_path: Path) -> None:
        self.logins = logins
        self.login = logins.two_factor
        self.tmp = tmp_path
        tag = uuid.uuid4().hex[:8]
        self.remote = f"/home/{ssh_host.user}/mfa-{tag}"
        self.log = f"{self.remote}-log.jsonl"
        config_home = tmp_path / "xdg"
        (config_home / "corral").mkdir(parents=True)
        ssh = f'{{ host = "{self.login.alias}", config_file = "{logins.ssh_config}" }}'
        (config_home / "corral" / "hosts.toml").write_text(textwrap.dedent(f"""
            [hosts.mfa]
            launcher = "ssh"
            workdir = "{self.remote}/ssh"
            python = "{rig.python}"
            ssh = {ssh}

            [hosts.mfa-slurm]
            launcher = "slurm"
            workdir = "{self.remote}/slurm"
            python = "{rig.python}"
            time = "5"
            ssh = {ssh}

            [hosts.pw]
            launcher = "ssh"
            workdir = "{self.remote}/pw"
            ssh = {{ host = "{logins.password_host.alias}", config_file = "{logins.ssh_config}" }}

            [hosts.pp]
            launcher = "ssh"
            workdir = "{self.remote}/pp"
            ssh = {{ host = "{logins.passphrase_alias}", config_file = "{logins.ssh_config}" }}
            """))
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(config_home),
                    "PYTHONPATH": str(REPO), "CORRAL_WORKSPACE": str(tmp_path / "ws")}
        self.env.pop("SSH_AUTH_SOCK", None)  # no agent: corral asks what the login needs
        self.script = tmp_path / "xp.py"
        self.script.write_text(XP)
        self.key_host = ssh_host

    def xp_args(self, host: str, n: int = 3, sleep: float = 0.5) -> list[str]:
        return [str(self.script), host, str(self.tmp / "ws"), self.log, str(n), str(sleep)]

    def spawn(self, *argv: str) -> pexpect.spawn:
        """``argv`` on a pseudo-terminal of its own, as typed at a terminal."""
        return pexpect.spawn(argv[0], list(argv[1:]), env=self.env, cwd=str(self.tmp),
                             encoding="utf-8", timeout=180)

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """``argv`` without a terminal (as in a job, or under nohup)."""
        return subprocess.run(argv, env=self.env, cwd=self.tmp, capture_output=True, text=True,
                              timeout=180, stdin=subprocess.DEVNULL, start_new_session=True)

    def corral(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "corral", *args)

    def records(self) -> list[dict]:
        c = SSHConnector(self.key_host.alias, config_file=self.key_host.ssh_config)
        if not c.exists(self.log):
            return []
        return [json.loads(line) for line in c.read_text(self.log).splitlines() if line]

    def logins_so_far(self) -> int:
        """Second factors sshd accepted (it logs them a moment after)."""
        last = self.login.accepted(KBD)
        time.sleep(0.3)
        while (now := self.login.accepted(KBD)) != last:
            last = now
            time.sleep(0.3)
        return now

    def holders(self) -> list[dict]:
        """The shared connections of this user to the two-factor sshd."""
        return [h for h in holders() if h["alias"] == self.login.alias]

    def cleanup(self) -> None:
        c = SSHConnector(self.key_host.alias, config_file=self.key_host.ssh_config)
        c.run(["rm", "-rf", "--", self.remote, self.log])


@pytest.fixture
def cluster(logins, ssh_host, rig, tmp_path):
    found = Cluster(logins, ssh_host, rig, tmp_path)
    yield found
    found.cleanup()


def answer_code(child: pexpect.spawn, cluster: Cluster) -> None:
    child.expect_exact(CODE_PROMPT)
    child.sendline(cluster.logins.code())


def finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return str(child.before)


def job_ids(cluster: Cluster) -> list[str]:
    listing = cluster.corral("jobs", "ls")
    assert listing.returncode == 0, listing.stderr
    return [line.split()[0] for line in listing.stdout.splitlines()[1:] if line.strip()]


@pytest.mark.slurm
def test_one_code_for_two_experiments_and_ten_commands(cluster):
    before = cluster.logins_so_far()
    # an experiment on the SSH launcher: corral asks the code once, at this terminal
    child = cluster.spawn(sys.executable, *cluster.xp_args("mfa"))
    answer_code(child, cluster)
    assert "finished" in finish(child)
    # one on SLURM through the same login node: no question
    child = cluster.spawn(sys.executable, *cluster.xp_args("mfa-slurm"))
    assert child.expect_exact([CODE_PROMPT, pexpect.EOF]) == 1, "asked again"
    child.close()
    assert child.exitstatus == 0, child.before
    names = sorted(r["name"] for r in cluster.records())
    assert names == sorted([f"mfa-{i}" for i in range(3)] + [f"mfa-slurm-{i}" for i in range(3)])
    # ten more corral processes, none with a terminal, each reaching the host
    ids = job_ids(cluster)
    assert len(ids) == 6
    commands = [
        *(("jobs", "log", i) for i in ids[:4]),
        ("jobs", "show", ids[0]),
        ("jobs", "show", ids[-1]),
        ("check", "mfa"),
        ("check", "mfa-slurm"),
        ("ssh", "open", "mfa"),
        ("ssh", "status"),
    ]
    assert len(commands) == 10
    for command in commands:
        done = cluster.corral(*command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "already open" in cluster.corral("ssh", "open", "mfa").stdout
    assert cluster.logins_so_far() - before == 1  # counted by sshd, not by corral


def test_without_a_terminal_and_without_a_connection_one_line_at_once(cluster):
    for argv in (
        (sys.executable, "-m", "corral", "ssh", "open", "mfa"),
        (sys.executable, *cluster.xp_args("mfa")),
    ):
        started = time.monotonic()
        done = cluster.run(*argv)
        elapsed = time.monotonic() - started
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        (line,) = lines
        assert line.startswith("corral: error: ")
        assert f"'{CODE_PROMPT.strip()}'" in line  # what the host asked, as it words it
        assert "no terminal" in line
        assert f"corral ssh open {cluster.login.alias}" in line
        assert elapsed < 5, f"{argv[1:]} took {elapsed:.1f} s"
        print(f"{' '.join(argv[1:3])}: failed in {elapsed:.2f} s")
    assert cluster.records() == []  # nothing ran
    assert cluster.holders() == []


def test_corral_ssh_open_asks_once_then_jobs_without_a_terminal_use_it(cluster):
    before = cluster.logins_so_far()
    child = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", "mfa")
    answer_code(child, cluster)
    out = finish(child)
    assert "mfa (corraltest@127.0.0.1:" in out and "logged in" in out
    assert "corral ssh close mfa" in out
    done = cluster.run(sys.executable, *cluster.xp_args("mfa", n=2, sleep=0))
    assert done.returncode == 0, done.stderr
    assert len(cluster.records()) == 2
    assert cluster.logins_so_far() - before == 1


def test_a_connection_lost_mid_experiment_waits_for_the_user_and_resubmits_nothing(cluster):
    before = cluster.logins_so_far()
    child = cluster.spawn(sys.executable, *cluster.xp_args("mfa", n=4, sleep=3))
    answer_code(child, cluster)
    deadline = time.monotonic() + 60
    while not cluster.records() and not any(
        (cluster.tmp / "ws").glob("jobs/*/*/.corral/remote.json")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (holder,) = cluster.holders()
    os.kill(int(holder["pid"]), signal.SIGKILL)  # the shared connection is gone
    # one line (wrapped by the live display) that says what to do
    child.expect(r"corral\s+ssh\s+open\s+corral-rig-2fa`.*?jobs\s+keep\s+their\s+state",
                 timeout=60)
    assert CODE_PROMPT not in child.before  # it does not ask by itself
    time.sleep(12)  # a poll or two: still no question, no new login
    assert cluster.logins_so_far() - before == 1
    opener = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", "mfa")
    answer_code(opener, cluster)
    assert "logged in" in finish(opener)
    out = finish(child)
    assert "finished" in out
    names = [r["name"] for r in cluster.records()]
    assert sorted(names) == [f"mfa-{i}" for i in range(4)]  # each ran once
    assert cluster.logins_so_far() - before == 2


def test_a_password_login_asks_once(logins, cluster):
    login = logins.password_host
    before = login.accepted("password")
    child = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", login.alias)
    child.expect(r"corraltest@127\.0\.0\.1's password: ")
    child.sendline(logins.password)
    assert "logged in" in finish(child)
    for _ in range(3):
        done = cluster.run(sys.executable, "-c", textwrap.dedent(f"""
            from corral.connectors.ssh import SSHConnector
            c = SSHConnector({login.alias!r}, config_file={str(logins.ssh_config)!r})
            print(c.run(["whoami"], check=True).stdout.strip(), c.exists("/etc/hostname"))
            """))
        assert done.stdout == "corraltest True\n", done.stderr
    time.sleep(0.3)
    assert login.accepted("password") - before == 1


def test_a_passphrase_protected_key_asks_its_passphrase_once(logins, cluster):
    before = logins.key_logins()
    child = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", logins.passphrase_alias)
    child.expect_exact(f"Enter passphrase for key '{logins.passphrase_key}': ")
    child.sendline(logins.passphrase)
    assert "logged in" in finish(child)
    done = cluster.run(sys.executable, "-c", textwrap.dedent(f"""
        from corral.connectors.ssh import SSHConnector
        c = SSHConnector({logins.passphrase_alias!r}, config_file={str(logins.ssh_config)!r})
        print(c.run(["whoami"], check=True).stdout.strip())
        """))
    assert done.stdout == "corraltest\n", done.stderr
    time.sleep(0.3)
    assert logins.key_logins() - before == 1


def test_a_wrong_code_is_refused_in_one_line(cluster):
    child = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", "mfa")
    child.expect_exact(CODE_PROMPT)
    child.sendline("000000" if cluster.logins.code() != "000000" else "111111")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    out = str(child.before)
    assert "corral: error: " in out and "refused the login" in out
    assert "Traceback" not in out
    assert cluster.holders() == []


def test_a_wrong_passphrase_is_refused_in_one_line(logins, cluster):
    child = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", logins.passphrase_alias)
    child.expect_exact(f"Enter passphrase for key '{logins.passphrase_key}': ")
    child.sendline("not " + logins.passphrase)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    out = str(child.before).strip()
    assert out == (f"corral: error: corraltest@127.0.0.1:{cluster.key_host.port}: the passphrase "
                   f"given does not decrypt key {logins.passphrase_key}")


def test_add_keys_to_agent_hands_the_decrypted_key_to_the_agent(logins, cluster, tmp_path):
    """``AddKeysToAgent yes``: the key decrypted at the first login goes to the user's agent,
    so that the next login (a new holder) asks nothing; ``IdentitiesOnly`` keeps the agent's
    other keys out of it."""
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")],
                           capture_output=True, text=True, check=True).stdout
    pid = int(agent.split("SSH_AGENT_PID=")[1].split(";")[0])
    cluster.env["SSH_AUTH_SOCK"] = str(tmp_path / "agent.sock")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {logins.passphrase_alias}\n    AddKeysToAgent yes\n"
                      + logins.ssh_config.read_text())
    hosts = Path(cluster.env["XDG_CONFIG_HOME"]) / "corral" / "hosts.toml"
    hosts.write_text(hosts.read_text().replace(str(logins.ssh_config), str(config)))
    try:
        child = cluster.spawn(sys.executable, "-m", "corral", "ssh", "open", "pp")
        child.expect_exact(f"Enter passphrase for key '{logins.passphrase_key}': ")
        child.sendline(logins.passphrase)
        assert "logged in" in finish(child)
        listed = subprocess.run(["ssh-add", "-l"], env=cluster.env, capture_output=True,
                                text=True)
        fingerprint = subprocess.run(
            ["ssh-keygen", "-lf", f"{logins.passphrase_key}.pub"], capture_output=True,
            text=True, check=True,
        ).stdout.split()[1]
        assert listed.stdout.count("SHA256:") == 1 and fingerprint in listed.stdout, listed
        assert cluster.corral("ssh", "close", "pp").stdout == "pp: closed\n"
        time.sleep(1)
        # a new login, without a terminal: the agent answers
        done = cluster.corral("ssh", "open", "pp")
        assert done.returncode == 0, done.stderr
        assert "logged in" in done.stdout
    finally:
        os.kill(pid, signal.SIGTERM)
