"""Where an SSH connection goes: ``user@host:port``, ``~/.ssh/config`` and explicit options.

Resolution follows OpenSSH: an explicit value (keyword argument or the ``user@host:port``
shorthand) wins over the ssh config, which wins over defaults. Two explicit values that
disagree (``"bob@h"`` with ``user="alice"``) are an error.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from corral.errors import ConfigError

if TYPE_CHECKING:
    import paramiko

DEFAULT_CONFIG = Path("~/.ssh/config")
AUTH_METHODS = ("publickey", "keyboard-interactive", "password")
"""OpenSSH's default order of authentication methods."""
DEFAULT_KNOWN_HOSTS = (Path("~/.ssh/known_hosts"), Path("~/.ssh/known_hosts2"))
HOST_KEY_POLICIES = ("reject", "accept-new")


class Destination(NamedTuple):
    """A fully resolved SSH destination."""

    alias: str
    hostname: str
    port: int
    user: str
    key_filenames: tuple[str, ...]
    identities_only: bool
    known_hosts: tuple[str, ...]
    proxy_jump: str | None
    config_file: str | None
    auth_methods: tuple[str, ...] = AUTH_METHODS
    """The methods to try, in order (``PreferredAuthentications``, less those the config
    turns off: ``PubkeyAuthentication``, ``KbdInteractiveAuthentication``,
    ``PasswordAuthentication``)."""
    add_keys_to_agent: str = "no"
    """``AddKeysToAgent``: ``yes``, ``confirm`` or ``ask`` add a key decrypted here."""
    control_master: str = "no"
    """``ControlMaster`` of the ssh config."""
    control_path: str | None = None
    """``ControlPath``, expanded (``%h``, ``%p``, ``%r``, ``%C``, ``~``)."""
    control_persist: str | None = None
    """``ControlPersist``: how long OpenSSH's master stays up after its last client."""
    batch_mode: bool = False
    """``BatchMode yes``: never ask anything, as with no terminal."""

    @property
    def key(self) -> tuple[str, int, str, tuple[str, ...], str | None]:
        """What makes two connections the same connection."""
        return (self.hostname, self.port, self.user, self.key_filenames, self.proxy_jump)

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def split_destination(host: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` → (user, host, port); IPv6 as ``[addr]:port``."""
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(
            f"SSH host: expected 'host', 'user@host' or 'user@host:port', got {host!r}"
        )
    user = None
    if "@" in host:
        user, host = host.rsplit("@", 1)
    port: int | None = None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ConfigError(f"SSH host {host!r}: unclosed '['")
        rest = host[end + 1 :]
        host = host[1:end]
        if rest:
            port = _port(rest.lstrip(":"), host)
    elif host.count(":") == 1:
        host, raw = host.split(":")
        port = _port(raw, host)
    if not host or (user is not None and not user):
        raise ConfigError(f"SSH host {host!r}: empty user or host name")
    return user, host, port


def _port(raw: str | int, host: str) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"SSH host {host!r}: port {raw!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"SSH host {host!r}: port {port} is out of range 1-65535")
    return port


def _explicit(name: str, a: object, b: object, host: str) -> object:
    if a is not None and b is not None and a != b:
        raise ConfigError(
            f"SSH host {host!r}: {name} given twice with different values ({a!r} and {b!r})"
        )
    return a if a is not None else b


def load_config(
    config_file: str | os.PathLike[str] | None,
) -> tuple[paramiko.SSHConfig, str | None]:
    """The ssh config to use (explicit file, else ``~/.ssh/config`` if it exists)."""
    import paramiko

    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"SSH config file {path} does not exist")
    else:
        path = DEFAULT_CONFIG.expanduser()
        if not path.is_file():
            return paramiko.SSHConfig(), None
    try:
        return paramiko.SSHConfig.from_path(str(path)), str(path)
    except Exception as exc:  # paramiko raises several types for a bad file
        raise ConfigError(f"cannot read SSH config {path}: {exc}") from exc


def resolve(
    host: str,
    *,
    user: str | None = None,
    port: int | None = None,
    key_filename: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    known_hosts: str | os.PathLike[str] | None = None,
) -> Destination:
    """Resolve ``host`` and explicit options through the ssh config."""
    host_user, alias, host_port = split_destination(host)
    user = _explicit("user", host_user, user, host)  # type: ignore[assignment]
    port = _explicit("port", host_port, _port(port, alias) if port is not None else None, host)  # type: ignore[assignment]
    config, config_path = load_config(config_file)
    entry = config.lookup(alias)
    hostname = entry.get("hostname", alias)
    resolved_port = port if port is not None else _port(entry.get("port", 22), alias)
    resolved_user = user or entry.get("user") or getpass.getuser()
    if key_filename is not None:
        keys: tuple[str, ...] = (str(Path(key_filename).expanduser()),)
        if not Path(keys[0]).is_file():
            raise ConfigError(f"SSH key file {keys[0]} does not exist")
    else:
        keys = tuple(
            str(Path(k).expanduser())
            for k in entry.get("identityfile", [])
            if Path(k).expanduser().is_file()
        )
    if known_hosts is not None:
        known: tuple[str, ...] = (str(Path(known_hosts).expanduser()),)
    elif "userknownhostsfile" in entry:
        known = tuple(str(Path(p).expanduser()) for p in entry["userknownhostsfile"].split())
    else:
        known = tuple(str(p.expanduser()) for p in DEFAULT_KNOWN_HOSTS)
    jump = entry.get("proxyjump")
    if jump is not None and jump.lower() == "none":
        jump = None
    control_path = entry.get("controlpath")
    if control_path is not None and control_path.lower() == "none":
        control_path = None
    return Destination(
        alias=alias,
        hostname=hostname,
        port=resolved_port,
        user=resolved_user,
        key_filenames=keys,
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        known_hosts=known,
        proxy_jump=jump,
        config_file=str(config_file) if config_file is not None else config_path,
        auth_methods=auth_methods(entry),
        add_keys_to_agent=str(entry.get("addkeystoagent", "no")).lower(),
        control_master=str(entry.get("controlmaster", "no")).lower(),
        control_path=str(Path(control_path).expanduser()) if control_path else None,
        control_persist=entry.get("controlpersist"),
        batch_mode=str(entry.get("batchmode", "no")).lower() == "yes",
    )


def auth_methods(entry: dict[str, Any]) -> tuple[str, ...]:
    """The authentication methods an ssh config entry allows, in its preferred order."""
    order = [m.strip() for m in str(entry.get("preferredauthentications", "")).split(",")]
    methods = [m for m in order if m] or list(AUTH_METHODS)
    methods = ["keyboard-interactive" if m == "kbdinteractive" else m for m in methods]
    off = {
        "publickey": entry.get("pubkeyauthentication", "yes"),
        "keyboard-interactive": entry.get(
            "kbdinteractiveauthentication", entry.get("challengeresponseauthentication", "yes")
        ),
        "password": entry.get("passwordauthentication", "yes"),
    }
    return tuple(m for m in methods if m in AUTH_METHODS and str(off.get(m, "yes")).lower() != "no")


def unknown_alias_hint(dest: Destination) -> str:
    """Why a host name that does not resolve may be a mistyped alias: ``" ('gpubxo' is not a
    Host of ~/.ssh/config (did you mean 'gpubox'?); Hosts there: gpubox, mycluster)"``; ""
    when the config names it (its HostName then is what did not resolve)."""
    from corral.errors import did_you_mean

    if "." in dest.alias or ":" in dest.alias:  # a real host name or address, not an alias
        return ""
    config, path = load_config(dest.config_file)
    hosts = sorted(
        h for h in config.get_hostnames() if not any(c in h for c in "*?!") and h != "*"
    )
    if dest.alias in hosts or dest.hostname != dest.alias:
        return ""
    where = path or f"{DEFAULT_CONFIG} (there is none)"
    listed = f"; Hosts there: {', '.join(hosts)}" if hosts else ""
    return f" ({dest.alias!r} is not a Host of {where}{did_you_mean(dest.alias, hosts)}{listed})"
