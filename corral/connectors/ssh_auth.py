"""Authentication as a real login asks for it: keys (agent, files, passphrases), password,
keyboard-interactive (a TOTP code, "Duo: 1. push"), and servers that want several in a row
(``AuthenticationMethods publickey,keyboard-interactive``).

What must come from a person goes through a :class:`Prompter`: the terminal's
(:class:`TerminalPrompter`), one that relays the questions to the corral process that has the
terminal (the shared connection's holder, :mod:`corral.connectors.ssh_share`), or none
(:class:`NoPrompter`), which fails at once with a one-line :class:`~corral.errors.LoginNeeded`
saying how to open the connection first. The host's words are shown as they are.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from corral.connectors.ssh_config import AUTH_METHODS
from corral.errors import AuthenticationError, LoginNeeded

if TYPE_CHECKING:
    import paramiko

    from corral.connectors.ssh_config import Destination

DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


@dataclass(frozen=True)
class Prompt:
    """One question of a login."""

    text: str
    echo: bool
    """Whether the answer may be shown as it is typed (a code may, a password may not)."""


class Prompter(Protocol):
    """Asks a person the questions of a login; raises LoginNeeded when nobody can answer."""

    def __call__(self, title: str, instructions: str, prompts: Sequence[Prompt]) -> list[str]:
        """The answers to ``prompts``, in order."""
        ...


def open_shared_hint(alias: str) -> str:
    """How a user opens the connection of ``alias`` ahead, at a terminal."""
    return f"run `corral ssh open {alias}` in a terminal first"


NO_TERMINAL = "there is no terminal to answer it"
AGAIN = "corral does not log in again while it works (a login needs a person)"


class NoPrompter:
    """Refuses every question at once with a one-line LoginNeeded: for a process without a
    terminal, and for any login after a connection's first (polling never logs in).

    :param why: why nobody is asked, for the message.
    """

    def __init__(self, dest: Destination, why: str = NO_TERMINAL) -> None:
        self.dest = dest
        self.why = why

    def __call__(self, title: str, instructions: str, prompts: Sequence[Prompt]) -> list[str]:
        """Refuse, naming what the host asked and how to open the connection ahead."""
        asked = "; ".join(p.text.strip() for p in prompts) or title or "a login"
        raise LoginNeeded(
            f"{self.dest} asks {asked!r} and {self.why}: {open_shared_hint(self.dest.alias)}",
            alias=self.dest.alias,
            dropped=self.why is not NO_TERMINAL,
        )


class TerminalPrompter:
    """Asks on the controlling terminal (``/dev/tty``), as OpenSSH does."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest

    @staticmethod
    def available() -> bool:
        """Whether this process has a terminal to ask on."""
        try:
            with open("/dev/tty", "r+b", buffering=0):
                return True
        except OSError:
            return False

    def __call__(self, title: str, instructions: str, prompts: Sequence[Prompt]) -> list[str]:
        """Show the host's title and instructions, then read each answer."""
        try:
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            return NoPrompter(self.dest)(title, instructions, prompts)
        with io.TextIOWrapper(io.FileIO(fd, "w+"), encoding="utf-8") as tty:
            for line in (title, instructions):
                if line.strip():
                    tty.write(line.rstrip() + "\n")
            return [_ask(tty, p) for p in prompts]


def _ask(tty: IO[str], prompt: Prompt) -> str:
    if prompt.echo:
        tty.write(prompt.text)
        tty.flush()
        return tty.readline().rstrip("\n")
    import getpass

    return getpass.getpass(prompt.text, stream=tty)  # type: ignore[arg-type]  # a TextIO


def terminal_or_none(dest: Destination) -> Prompter:
    """The terminal's prompter when this process has one (and the ssh config does not say
    ``BatchMode yes``), else the one that refuses."""
    if dest.batch_mode:
        return NoPrompter(dest, "the ssh config says BatchMode yes (never ask)")
    return TerminalPrompter(dest) if TerminalPrompter.available() else NoPrompter(dest)


# --- the login -----------------------------------------------------------------------------


def _allowed(transport: paramiko.Transport, user: str) -> list[str]:
    import paramiko

    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as exc:
        return list(exc.allowed_types)
    except paramiko.AuthenticationException:
        return ["publickey", "password", "keyboard-interactive"]
    return []  # "none" was enough


def _agent_keys(dest: Destination, files: Sequence[str]) -> list[paramiko.PKey]:
    import paramiko

    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    try:
        keys: list[paramiko.PKey] = list(paramiko.Agent().get_keys())
    except paramiko.SSHException:
        return []
    if dest.identities_only:  # only the agent's copies of the configured identities
        wanted = {_public_blob(f) for f in files} - {None}
        keys = [k for k in keys if k.asbytes() in wanted]
    return keys


def _public_blob(path: str) -> bytes | None:
    import base64

    try:
        fields = Path(path + ".pub").read_text(encoding="utf-8").split()
        return base64.b64decode(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _identity_files(dest: Destination) -> list[str]:
    if dest.key_filenames:
        return list(dest.key_filenames)
    if dest.identities_only:
        return []
    return [str(Path(p).expanduser()) for p in DEFAULT_IDENTITIES if Path(p).expanduser().is_file()]


def _load_key(
    path: str, dest: Destination, prompter: Prompter, agent_blobs: set[bytes]
) -> tuple[paramiko.PKey | None, str | None]:
    """The private key of ``path`` (asking its passphrase if needed), with the passphrase
    asked; ``(None, None)`` when the agent holds it already or it cannot be read."""
    import paramiko

    try:
        return paramiko.PKey.from_path(path), None
    except (paramiko.PasswordRequiredException, TypeError):
        pass  # (a TypeError: cryptography's word for an OpenSSH-format key with a passphrase)
    except (OSError, paramiko.SSHException, ValueError):
        return None, None
    if _public_blob(path) in agent_blobs:
        return None, None  # tried through the agent already
    (passphrase,) = prompter("", "", [Prompt(f"Enter passphrase for key '{path}': ", False)])
    try:
        # positional, bytes: paramiko 5 renamed the argument, its stubs say str
        return paramiko.PKey.from_path(path, passphrase.encode()), passphrase  # type: ignore[arg-type]
    except (paramiko.SSHException, ValueError) as exc:
        # cryptography says a wrong passphrase as "no BEGIN/END delimiters"
        raise AuthenticationError(
            f"{dest}: the passphrase given does not decrypt key {path}"
        ) from exc


def _add_to_agent(path: str, passphrase: str, dest: Destination) -> None:
    """``AddKeysToAgent``: hand a key decrypted here to the user's agent (``ssh-add``)."""
    if dest.add_keys_to_agent not in ("yes", "confirm", "ask") or not os.environ.get(
        "SSH_AUTH_SOCK"
    ):
        return
    with tempfile.TemporaryDirectory() as tmp:
        askpass = Path(tmp) / "askpass"
        askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$CORRAL_SSH_PASSPHRASE"\n')
        askpass.chmod(0o700)
        env = {
            **os.environ,
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": os.environ.get("DISPLAY", ":0"),
            "CORRAL_SSH_PASSPHRASE": passphrase,
        }
        argv = ["ssh-add", *(["-c"] if dest.add_keys_to_agent == "confirm" else []), path]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )


def authenticate(
    transport: paramiko.Transport,
    dest: Destination,
    prompter: Prompter,
    keys: dict[str, paramiko.PKey] | None = None,
) -> bool:
    """Log in on ``transport`` as ``dest.user``, with every method the host allows and the
    ssh config prefers, in turn, until the host says enough (several when it wants several);
    whether the host asked a person something (a code, a password), so that logging in again
    would too.

    :param keys: keys decrypted so far, by file, reused (and completed) here: a key's
        passphrase is asked once per connection holder, as an agent would.
    :raises LoginNeeded: a question came and ``prompter`` cannot ask it.
    :raises AuthenticationError: the host refused everything tried.
    """
    import paramiko

    user = dest.user
    keys = {} if keys is None else keys
    asked: list[bool] = []
    allowed = _allowed(transport, user)
    tried: list[str] = []
    done: set[str] = set()
    refusal: Exception | None = None
    while not transport.is_authenticated():
        method = next((m for m in dest.auth_methods if m in allowed and m not in done), None)
        if method is None:
            offered = ", ".join(allowed) or "nothing"
            config = ""
            if set(dest.auth_methods) != set(AUTH_METHODS):
                config = f"; the ssh config allows only: {', '.join(dest.auth_methods)}"
            raise AuthenticationError(
                f"{dest} refused the login (tried: {', '.join(tried) or 'nothing'}; the host "
                f"accepts: {offered}{config})"
            ) from refusal
        done.add(method)
        try:
            if method == "publickey":
                nxt = _publickey(transport, dest, prompter, tried, keys)
            elif method == "keyboard-interactive":
                tried.append("keyboard-interactive")
                nxt = transport.auth_interactive(user, _interactive(prompter, asked))
            else:
                tried.append("password")
                asked.append(True)
                (password,) = prompter(
                    "", "", [Prompt(f"{user}@{dest.hostname}'s password: ", False)]
                )
                nxt = transport.auth_password(user, password, fallback=False)
        except paramiko.BadAuthenticationType as exc:
            nxt = list(exc.allowed_types)
        except paramiko.AuthenticationException as exc:
            refusal = exc
            continue
        if nxt:
            allowed = list(nxt)  # partial success: the host wants another method too
            done = set()
    return bool(asked)


def _publickey(
    transport: paramiko.Transport,
    dest: Destination,
    prompter: Prompter,
    tried: list[str],
    keys: dict[str, paramiko.PKey],
) -> list[str] | None:
    import paramiko

    files = _identity_files(dest)
    agent = _agent_keys(dest, files)
    blobs = {k.asbytes() for k in agent}
    for key in agent:
        tried.append("agent key")
        with contextlib.suppress(paramiko.AuthenticationException):
            result: list[str] = transport.auth_publickey(dest.user, key)
            return result
    for path in files:
        found, passphrase = keys.get(path), None
        if found is None:
            found, passphrase = _load_key(path, dest, prompter, blobs)
        if found is None:
            continue
        if passphrase is not None:
            keys[path] = found
        tried.append(f"key {path}")
        try:
            result = transport.auth_publickey(dest.user, found)
        except paramiko.AuthenticationException:
            continue
        if passphrase is not None:
            _add_to_agent(path, passphrase, dest)
        return result
    raise paramiko.AuthenticationException("no key was accepted")


def _interactive(prompter: Prompter, asked: list[bool]):  # type: ignore[no-untyped-def]
    def handler(title: str, instructions: str, prompt_list: list[tuple[str, bool]]) -> list[str]:
        if not prompt_list:
            return []
        asked.append(True)
        return prompter(title, instructions, [Prompt(text, echo) for text, echo in prompt_list])

    return handler
