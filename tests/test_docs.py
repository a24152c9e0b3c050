"""The examples of the documentation, run as written; the CLI reference against the CLI.

The convention (docs/examples.md explains it to writers): each page of ``docs/`` is one
session, in a fresh directory with a fresh ``HOME``, its steps taken in order:

- a fenced block with a ``title="path"`` is a file the reader writes: it is written there
  (a path starting with ``~/`` goes under ``HOME``);
- an untitled ``python`` block is a script: written to a file and run with ``python``;
- a ``console`` block after ``<!-- docs: run -->`` is typed: each ``$ `` line runs in bash
  and must exit 0 (the lines shown after it are output, not checked);
- ``<!-- docs: skip -->`` before a block leaves it out (a fragment).

``<!-- docs: needs ssh -->`` or ``<!-- docs: needs slurm -->`` on a page runs it against the
test rig (skipped without it, failed under ``CI=true``). The test then gives the page what
its tutorial asks the reader to have: ``~/.ssh/config`` with the aliases ``mycluster`` and
``gpubox`` for the rig's sshd and its host key in ``~/.ssh/known_hosts`` (``ssh`` and
``scp`` on ``PATH`` read that config), and ``~/venv`` on the host, a Python with corral.
``<!-- docs: needs 2fa -->`` makes ``mycluster`` the rig's sshd that asks a key and a TOTP
code, and types the page's commands at a terminal of their own, answering each
``Verification code:`` with the code of the moment, as the reader would. Each page has its
own runtime directory (``XDG_RUNTIME_DIR``), whose shared SSH connections are closed after.
``<!-- docs: remote PATH... -->`` names what the page creates on the host: removed before
and after. ``<!-- docs: needs venv -->`` gives the page a virtual environment of its own
(seeing the installed packages, as ``--system-site-packages`` does): its ``python``, ``pip``
and ``corral`` are first on ``PATH``, so that what the page ``pip install``s stays there.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from corral.cli import cli
from tests.rig.fixtures import Rig

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TIMEOUT = 300
ALIASES = ("mycluster", "gpubox")
REMOTE_VENV = "venv"  # ~/venv on the host
FIXTURES = {"ssh": "ssh_host", "slurm": "slurm_cluster", "2fa": "logins"}
"""What a page's ``needs`` asks of the rig."""
MARKERS = {"ssh": "ssh", "slurm": "slurm", "2fa": "ssh"}
LOCAL_NEEDS = {"venv"}
"""Needs met on this machine, without the rig."""

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs:\s*(?P<words>.*?)\s*-->\s*$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclass
class Block:
    """A fenced code block of a page."""

    page: Path
    line: int
    lang: str
    title: str | None
    code: str
    directive: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


@dataclass
class Page:
    """A page's blocks and page-level directives."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)
    remote: list[str] = field(default_factory=list)

    @property
    def steps(self) -> list[Block]:
        return [b for b in self.blocks if kind(b) is not None]


def parse(path: Path) -> Page:
    """Fenced blocks (also indented ones, in lists) and ``<!-- docs: ... -->`` directives."""
    page = Page(path)
    lines = path.read_text().splitlines()
    directive = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        found = DIRECTIVE.match(line)
        if found:
            words = found.group("words").split()
            if words and words[0] == "needs":
                page.needs.update(words[1:])
            elif words and words[0] == "remote":
                page.remote.extend(words[1:])
            else:
                directive = " ".join(words)
            i += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            if line.strip():
                directive = ""
            i += 1
            continue
        indent, mark, info = fence.group("indent"), fence.group("fence"), fence.group("info")
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(mark):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        title = TITLE.search(info)
        lang = info.split()[0].lstrip("{.") if info.split() else ""
        page.blocks.append(
            Block(path, i - len(body), lang, title.group("title") if title else None,
                  "\n".join(body) + "\n", directive)
        )
        directive = ""
        i += 1
    return page


def kind(block: Block) -> str | None:
    """``file``, ``script``, ``console`` or None (not run)."""
    if block.directive == "skip":
        return None
    if block.title:
        return "file"
    if block.lang in ("python", "py"):
        return "script"
    if block.lang == "console" and block.directive == "run":
        return "console"
    return None


def commands(console: str) -> list[str]:
    """The ``$ `` lines of a console block (a line ending in ``\\`` continues)."""
    found: list[str] = []
    pending: str | None = None
    for line in console.splitlines():
        if pending is not None:
            pending += "\n" + line
        elif line.startswith("$ "):
            pending = line[2:]
        else:
            continue
        if pending.endswith("\\"):
            continue
        found.append(pending)
        pending = None
    return found


PAGES = [parse(p) for p in sorted(DOCS.rglob("*.md"))]


def page_params() -> list[object]:
    params = []
    for page in PAGES:
        if not page.steps:
            continue
        marks = [getattr(pytest.mark, MARKERS[need]) for need in sorted(page.needs - LOCAL_NEEDS)]
        params.append(pytest.param(page, marks=marks, id=str(page.path.relative_to(DOCS))))
    return params


# --- the session of a page ---------------------------------------------------------------------


def client_environ(home: Path, bindir: Path) -> dict[str, str]:
    """A new user's shell: own HOME, corral and python on PATH, no corral variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORRAL_", "XDG_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=str(REPO))  # this checkout's corral, whatever else is installed
    return env


def make_bin(bindir: Path, ssh_config: Path | None, python: str = sys.executable) -> None:
    """``python`` (this interpreter, or a venv's), ``pip`` and ``corral`` run with it;
    ``ssh``/``scp`` read HOME's config."""
    bindir.mkdir()
    py = shlex.quote(python)
    scripts = {
        "python": f'exec {py} "$@"',
        "python3": f'exec {py} "$@"',
        "pip": f'exec {py} -m pip "$@"',
        "corral": f'exec {py} -c "from corral.cli import main; main()" "$@"',
    }
    if ssh_config is not None:  # OpenSSH reads the passwd home's config, not $HOME's
        for tool in ("ssh", "scp"):
            scripts[tool] = f'exec /usr/bin/{tool} -F {shlex.quote(str(ssh_config))} "$@"'
    for name, body in scripts.items():
        path = bindir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)


def ssh_setup(home: Path, rig: Rig, two_factor: bool = False) -> Path:
    """``~/.ssh/config`` naming the rig's sshd ``mycluster`` and ``gpubox``, its key known;
    with ``two_factor``, ``mycluster`` is the sshd that also asks a TOTP code."""
    ssh = rig.ssh
    dot = home / ".ssh"
    dot.mkdir(mode=0o700)
    known = dot / "known_hosts"
    shutil.copyfile(ssh.known_hosts, known)
    config = dot / "config"
    common = (f"    User {ssh.user}\n    IdentityFile {ssh.key}\n    IdentitiesOnly yes\n"
              f"    UserKnownHostsFile {known}\n")
    if two_factor:
        assert rig.logins is not None
        config.write_text(
            f"Host mycluster\n    HostName 127.0.0.1\n    Port {rig.logins.two_factor.port}\n"
            + common
            + f"Host gpubox\n    HostName {ssh.host}\n    Port {ssh.port}\n"
            + common + "    BatchMode yes\n"
        )
        return config
    config.write_text(
        f"Host {' '.join(ALIASES)}\n"
        f"    HostName {ssh.host}\n"
        f"    Port {ssh.port}\n"
        + common
        + "    BatchMode yes\n"
    )
    return config


def remote(rig: Rig, script: str) -> None:
    """Run a shell script on the rig's sshd as its test user."""
    subprocess.run(rig.ssh.ssh_argv(f"sh -c {shlex.quote(script)}"), check=True,
                   capture_output=True, text=True, timeout=60)


def remote_clean(rig: Rig, paths: list[str]) -> None:
    """Remove the ``~/NAME`` paths a page creates on the host."""
    for path in paths:
        if not re.fullmatch(r"~/[\w.-]+", path):
            raise ValueError(f"docs: remote path {path!r}: expected ~/NAME")
    if paths:
        remote(rig, "rm -rf -- " + " ".join(f"\"$HOME\"/{shlex.quote(p[2:])}" for p in paths))


def remote_venv(rig: Rig) -> None:
    """``~/venv`` on the host: a link to the rig's Python environment, which has corral."""
    venv = shlex.quote(str(Path(rig.python).parent.parent))
    link = f'"$HOME"/{REMOTE_VENV}'
    remote(rig, f"if [ -L {link} ] || [ ! -e {link} ]; then ln -sfn {venv} {link}; "
                f"else echo '~/{REMOTE_VENV} exists and is not a link' >&2; exit 1; fi")


def run_step(block: Block, cwd: Path, home: Path, env: dict[str, str], index: int,
             code: Callable[[], str] | None = None) -> None:
    step = kind(block)
    if step == "file":
        assert block.title is not None
        target = home / block.title[2:] if block.title.startswith("~/") else cwd / block.title
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
        return
    if step == "script":
        script = cwd / f"example_{index}.py"
        script.write_text(block.code)
        check(block, ["python", script.name], cwd, env)
        return
    for command in commands(block.code):
        if code is not None:
            typed(block, command, cwd, env, code)
        else:
            check(block, ["bash", "-c", command], cwd, env, shown=command)


def typed(block: Block, command: str, cwd: Path, env: dict[str, str],
          code: Callable[[], str]) -> None:
    """``command`` typed at a terminal; each ``Verification code:`` answered with ``code()``."""
    import pexpect

    child = pexpect.spawn("bash", ["-c", command], cwd=str(cwd), env=env, encoding="utf-8",
                          timeout=TIMEOUT)
    seen = ""
    while True:
        try:
            found = child.expect_exact(["Verification code: ", pexpect.EOF])
        except pexpect.TIMEOUT:
            child.close(force=True)
            pytest.fail(f"{block.where}: {command} still running after {TIMEOUT}s")
        seen += str(child.before)
        if found == 1:
            break
        child.sendline(code())
    child.close()
    if child.exitstatus != 0:
        tail = "\n".join(seen.splitlines()[-30:])
        pytest.fail(f"{block.where}: {command} exited {child.exitstatus}:\n{tail}",
                    pytrace=False)


def check(block: Block, argv: list[str], cwd: Path, env: dict[str, str],
          shown: str | None = None) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: {shown or 'the example'} still running after {TIMEOUT}s")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        pytest.fail(f"{block.where}: {shown or 'the example'} exited {done.returncode}:\n{tail}",
                    pytrace=False)


@pytest.mark.parametrize("page", page_params())
def test_page_examples_run(page: Page, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    home, cwd, bindir = tmp_path / "home", tmp_path / "project", tmp_path / "bin"
    home.mkdir()
    cwd.mkdir(mode=0o700)  # like a laptop's project: a remote host cannot read it
    rig: Rig | None = None
    ssh_config = None
    code = None
    python = sys.executable
    if "venv" in page.needs:  # the page's own: what it installs stays in tmp_path
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                        str(venv)], check=True, capture_output=True, timeout=120)
        python = str(venv / "bin" / "python")
    if page.needs - LOCAL_NEEDS:
        for need in page.needs - LOCAL_NEEDS:
            request.getfixturevalue(FIXTURES[need])
        rig = request.getfixturevalue("rig")
        ssh_config = ssh_setup(home, rig, two_factor="2fa" in page.needs)
        if "2fa" in page.needs:
            code = request.getfixturevalue("logins").code
        remote_clean(rig, page.remote)
        remote_venv(rig)
    make_bin(bindir, ssh_config, python)
    env = client_environ(home, bindir)
    # a runtime directory of the page's own, as a login gives one (short: it holds sockets)
    runtime = Path(tempfile.mkdtemp(prefix="corral-docs-", dir="/tmp"))
    env["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        for index, block in enumerate(page.steps, 1):
            run_step(block, cwd, home, env, index, code)
    finally:
        subprocess.run(["corral", "ssh", "close", "--all"], env=env, cwd=cwd,
                       capture_output=True, timeout=60)
        shutil.rmtree(runtime, ignore_errors=True)
        if rig is not None:
            remote_clean(rig, page.remote)


def test_the_convention_finds_examples() -> None:
    """Pages with examples are found, and every page's directives are known words."""
    run = {p.path.relative_to(DOCS).as_posix() for p in PAGES if p.steps}
    assert {"getting-started.md", "concepts.md", "tutorials/slurm.md", "tutorials/ssh.md",
            "plugins.md"} <= run
    for page in PAGES:
        assert page.needs <= set(FIXTURES) | LOCAL_NEEDS, page.path
        for block in page.blocks:
            assert block.directive in ("", "run", "skip"), block.where


# --- the CLI reference --------------------------------------------------------------------------


def cli_commands() -> dict[str, click.Command]:
    """Every command of ``corral``, by its full name (``corral jobs ls``)."""
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, name: str) -> None:
        found[name] = command
        if isinstance(command, click.Group):
            for sub, child in command.commands.items():
                walk(child, f"{name} {sub}")

    walk(cli, "corral")
    return found


def documented_commands() -> dict[str, tuple[str, set[str]]]:
    """From docs/cli.md: each command heading, its usage line and the options of its table."""
    text = (DOCS / "cli.md").read_text()
    sections = re.split(r"^#{2,3} `(corral[^`]*)`\s*$", text, flags=re.M)
    found = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        usage = re.search(r"```text\n(.*?)\n```", body, re.S)
        options: set[str] = set()
        for row in re.findall(r"^\| (`-.*?) \|", body, re.M):
            options.update(re.findall(r"`(--?[\w-]+)", row))
        found[name] = (usage.group(1) if usage else "", options)
    return found


def test_cli_reference_matches_the_commands() -> None:
    documented = documented_commands()
    real = cli_commands()
    assert sorted(documented) == sorted(real), "docs/cli.md documents other commands"
    for name, command in real.items():
        usage, options = documented[name]
        ctx = click.Context(command, info_name=name)
        expected = " ".join([name, *command.collect_usage_pieces(ctx)])
        assert usage == expected, f"docs/cli.md usage of {name!r}"
        opts = {o for p in command.params if isinstance(p, click.Option)
                for o in [*p.opts, *p.secondary_opts]}
        assert options == opts, f"docs/cli.md options of {name!r}"


def test_every_test_the_reliability_page_names_exists():
    """docs/reliability.md maps each guarantee to tests: each ``file::test`` it names (or
    ``::test``, in the file named before it) is defined there."""
    text = (DOCS / "reliability.md").read_text()
    named = 0
    path: Path | None = None
    for ref in re.findall(r"`((?:[\w/.]+\.py)?::[\w:]+)(?:\[[^\]]*\])?`", text):
        file, _, names = ref.partition("::")
        if file:
            path = REPO / file
        assert path is not None and path.is_file(), f"{ref}: no such file"
        source = path.read_text()
        for name in names.split("::"):
            assert re.search(rf"^\s*(def|class) {name}\b", source, re.MULTILINE), (
                f"{ref}: {name} is not defined in {path.relative_to(REPO)}"
            )
            named += 1
    assert named >= 40
