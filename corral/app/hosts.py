"""Hosts: launchers named once in TOML files, then built by name (see docs/hosts.md).

Files read, each winning over the ones before it for a host it declares (the whole table):

1. ``$XDG_CONFIG_HOME/corral/hosts.toml`` (default ``~/.config/corral/hosts.toml``);
2. ``corral.toml`` of the project: the nearest in the current directory or its parents, up to
   the directory that holds ``.git``;
3. ``corral.toml`` of the workspace.

::

    [hosts.cluster]
    launcher = "slurm"
    ssh = "mycluster"
    workdir = "/scratch/{user}/corral"
    partition = "gpu"
"""

from __future__ import annotations

import getpass
import inspect
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from corral.connectors.base import Connector
    from corral.core.launcher import Launcher
    from corral.plugins.manager import PluginManager

USER_FILE = "hosts.toml"
PROJECT_FILE = "corral.toml"
CAPACITIES = ("cpus", "gpus", "gpu_type", "mem", "gpu_mem", "time", "nodes")
"""What a host may declare for :func:`corral.app.choose.find_launcher`."""
SLOT_CAPACITIES = {"cpu_slots": "cpus", "gpu_slots": "gpus", "gpu_type": "gpu_type"}
"""Launcher arguments of a machine (local, SSH) that say what it offers a job."""
RESERVED = ("launcher", "ssh", "capacity")
"""Keys of a host table that are not launcher arguments."""
SSH_PATHS = ("config_file", "key_filename", "known_hosts")
"""Keys of an ``ssh`` table that are paths, relative to the file that declares them."""

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_]\w*)\}")  # ${VAR} is the shell's, left alone


# --- where a key is written ----------------------------------------------------------------


def _scan(text: str, stops: str) -> int:
    """Index of the first character of ``stops`` outside quotes in ``text``, or -1."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in stops:
            return i
    return -1


def _split_keys(dotted: str) -> list[str]:
    keys, buf, quote = [], "", ""
    for ch in dotted:
        if quote:
            if ch == quote:
                quote = ""
            else:
                buf += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            keys.append(buf.strip())
            buf = ""
        else:
            buf += ch
    keys.append(buf.strip())
    return keys


def locate(text: str, keys: Sequence[str]) -> int | None:
    """The line (1-based) of TOML ``text`` that declares the dotted key ``keys``.

    tomllib keeps no positions, so the text is scanned: table headers, then ``key =`` lines
    (dotted keys included). When the key itself is not written (an inline table, a missing
    key), the line of its nearest enclosing table is given.
    """
    target = list(keys)
    best: tuple[int, int] | None = None  # (depth, line) of the deepest enclosing table
    table: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            inner = line.strip("[")
            end = _scan(inner, "]")
            table = _split_keys(inner[:end] if end >= 0 else inner)
            path = table
        else:
            equals = _scan(line, "=")
            if equals <= 0:
                continue  # the continuation of a multi-line value
            path = table + _split_keys(line[:equals])
        if path[: len(target)] == target:
            return number
        if target[: len(path)] == path and (best is None or len(path) > best[0]):
            best = (len(path), number)
    return best[1] if best else None


@dataclass(frozen=True)
class Source:
    """A hosts file and its text."""

    path: Path
    text: str

    def where(self, *keys: str) -> str:
        """``path:line`` of a dotted key (``path`` alone when no line is found)."""
        line = locate(self.text, keys)
        return f"{self.path}:{line}" if line else str(self.path)


# --- one host ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostSpec:
    """One ``[hosts.NAME]`` table, as declared (placeholders not expanded yet)."""

    name: str
    launcher: str
    ssh: str | Mapping[str, Any] | None
    options: Mapping[str, Any]
    """The launcher's keyword arguments."""
    capacity_table: Mapping[str, Any]
    """The ``[hosts.NAME.capacity]`` table."""
    source: Source

    def where(self, *keys: str) -> str:
        """``path:line`` of this host's table, or of one of its keys."""
        return self.source.where("hosts", self.name, *keys)

    @property
    def capacity(self) -> dict[str, Any]:
        """Declared capacities: launcher arguments named like one (a machine's
        ``cpu_slots``/``gpu_slots`` give its ``cpus``/``gpus``), then the capacity table."""
        declared = {k: self.options[k] for k in CAPACITIES if k in self.options}
        for slots, capacity in SLOT_CAPACITIES.items():
            if slots in self.options:
                declared[capacity] = self.options[slots]
        return {**declared, **self.capacity_table}

    def capacity_where(self, key: str) -> str:
        """Where the declared capacity ``key`` is written."""
        if key in self.capacity_table:
            return self.where("capacity", key)
        for slots, capacity in SLOT_CAPACITIES.items():
            if capacity == key and slots in self.options:
                return self.where(slots)
        return self.where(key)


def _spec(source: Source, name: str, table: Any) -> HostSpec:
    where = source.where("hosts", name)
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: host name {name!r}: letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-')"
        )
    if not isinstance(table, dict):
        raise ConfigError(
            f"{where}: host {name!r} must be a table ([hosts.{name}]), got {type(table).__name__}"
        )
    launcher = table.get("launcher")
    if not isinstance(launcher, str) or not launcher:
        raise ConfigError(
            f"{source.where('hosts', name, 'launcher')}: host {name!r} needs "
            'launcher = "<a registered launcher name>" (e.g. "ssh", "slurm")'
        )
    ssh = table.get("ssh")
    if ssh is not None and not (isinstance(ssh, str) and ssh) and not isinstance(ssh, dict):
        raise ConfigError(
            f"{source.where('hosts', name, 'ssh')}: host {name!r}: ssh must be an ssh alias, "
            f"'user@host:port', or a table of SSHConnector arguments, got {ssh!r}"
        )
    if isinstance(ssh, dict) and not isinstance(ssh.get("host"), str):
        raise ConfigError(
            f"{source.where('hosts', name, 'ssh')}: host {name!r}: the ssh table needs "
            'host = "<ssh alias or user@host:port>"'
        )
    capacity = table.get("capacity", {})
    if not isinstance(capacity, dict):
        raise ConfigError(
            f"{source.where('hosts', name, 'capacity')}: host {name!r}: capacity must be a "
            f"table ([hosts.{name}.capacity]) of {', '.join(CAPACITIES)}"
        )
    for key in capacity:
        if key not in CAPACITIES:
            raise ConfigError(
                f"{source.where('hosts', name, 'capacity', key)}: host {name!r}: unknown "
                f"capacity {key!r}; valid: {', '.join(CAPACITIES)}"
            )
    options = {k: v for k, v in table.items() if k not in RESERVED}
    return HostSpec(name, launcher, ssh, options, capacity, source)


# --- building a launcher -------------------------------------------------------------------


def _pack(table: dict[str, Any], name: str, where: str) -> Any:
    """``pack = {workers = 8, per_worker = 4}`` of a hosts-file line, as a ``Pack``."""
    import dataclasses

    from corral.launchers.packing import Pack

    valid = [f.name for f in dataclasses.fields(Pack)]
    for key in table:
        if key not in valid:
            raise ConfigError(
                f"{where}: host {name!r}: unknown pack key {key!r}{did_you_mean(key, valid)}; "
                f"valid: {', '.join(valid)}"
            )
    return Pack(**table)


def _parameters(factory: Any) -> tuple[set[str] | None, set[str]]:
    """The keyword arguments ``factory`` takes (None: any) and those it requires."""
    params = inspect.signature(factory).parameters.values()
    named = {
        p.name: p
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    required = {n for n, p in named.items() if p.default is inspect.Parameter.empty}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None, required
    return set(named), required


def _expand(value: Any, user: str, where: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) != "user":
                raise ConfigError(
                    f"{where}: unknown placeholder {{{m.group(1)}}} in {value!r}; valid: {{user}}"
                    " (write ${VAR} for a shell variable)"
                )
            return user

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, user, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, user, where) for k, v in value.items()}
    return value


def _connector(spec: HostSpec, plugins: PluginManager) -> Connector:
    """The connector of a host's ``ssh`` key: the registered ``ssh`` connector."""
    factory: Any = plugins.connectors.get("ssh")
    where = spec.where("ssh")
    if isinstance(spec.ssh, str):
        kwargs: dict[str, Any] = {"host": spec.ssh}
    else:
        assert spec.ssh is not None
        kwargs = dict(spec.ssh)
        valid, _ = _parameters(factory)
        assert valid is not None
        for key in kwargs:
            if key not in valid:
                raise ConfigError(
                    f"{spec.where('ssh', key)}: host {spec.name!r}: unknown ssh key {key!r}; "
                    f"valid: {', '.join(sorted(valid))}"
                )
        for key in SSH_PATHS:
            if isinstance(kwargs.get(key), str):
                path = Path(kwargs[key]).expanduser()
                kwargs[key] = str(path if path.is_absolute() else spec.source.path.parent / path)
    try:
        connector: Connector = factory(**kwargs)
        return connector
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: host {spec.name!r}: {exc}") from exc


def build(spec: HostSpec, plugins: PluginManager) -> Launcher:
    """The launcher a host declares."""
    registry = plugins.launchers
    name = spec.name
    if name in registry:
        raise ConfigError(
            f"{spec.where()}: host {name!r} is named like the launcher type {name!r} "
            f"(registered by plugin {registry.origin(name)!r}): rename the host, so that a "
            "name means one thing"
        )
    if spec.launcher not in registry:
        raise ConfigError(
            f"{spec.where('launcher')}: host {name!r}: unknown launcher {spec.launcher!r}"
            f"{did_you_mean(spec.launcher, registry.names())}; "
            f"registered: {', '.join(registry.names())}"
        )
    cls = registry.get(spec.launcher)
    takes, required = _parameters(cls)
    if takes is not None:
        valid = ", ".join(sorted((takes - {"connector"}) | set(RESERVED)))
        for key in spec.options:
            if key not in takes or key == "connector":
                hint = f" (declare it in [hosts.{name}.capacity])" if key in CAPACITIES else ""
                raise ConfigError(
                    f"{spec.where(key)}: host {name!r}: unknown key {key!r} for launcher "
                    f"{spec.launcher!r}{hint}; valid: {valid}"
                )
        if spec.ssh is not None and "connector" not in takes:
            raise ConfigError(
                f"{spec.where('ssh')}: host {name!r}: launcher {spec.launcher!r} takes no "
                "connector: remove 'ssh'"
            )
    missing = sorted(required - set(spec.options) - {"connector"})
    if missing:
        raise ConfigError(
            f"{spec.where()}: host {name!r}: launcher {spec.launcher!r} needs key {missing[0]!r}"
        )
    user = getpass.getuser()
    connector = None
    if spec.ssh is not None:
        connector = _connector(spec, plugins)
        user = getattr(getattr(connector, "destination", None), "user", user)  # who jobs run as
    options = {k: _expand(v, user, spec.where(k)) for k, v in spec.options.items()}
    if isinstance(options.get("pack"), dict):
        options["pack"] = _pack(options["pack"], name, spec.where("pack"))
    if connector is not None:
        options["connector"] = connector
    try:
        launcher = cls(**options)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{spec.where()}: host {name!r}: {exc}") from exc
    launcher.label = name
    return launcher


# --- the files -----------------------------------------------------------------------------


def user_file() -> Path:
    """The user's hosts file: ``$XDG_CONFIG_HOME/corral/hosts.toml`` or ``~/.config/...``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "corral" / USER_FILE


def project_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``corral.toml`` in ``start`` (default: the current directory) or its
    parents, up to the directory holding ``.git``."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def _read(path: Path, *, own: bool) -> list[HostSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read hosts file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    source = Source(path, text)
    if own:  # corral.toml may hold other tables, read elsewhere
        for key in data:
            if key != "hosts":
                raise ConfigError(
                    f"{source.where(key)}: unknown top-level key {key!r}; valid: hosts "
                    "([hosts.NAME] tables)"
                )
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise ConfigError(f"{source.where('hosts')}: 'hosts' must hold [hosts.NAME] tables")
    return [_spec(source, name, table) for name, table in hosts.items()]


class HostsConfig:
    """Every declared host, most specific file first (the finder's order).

    :param hosts: the hosts, in order; a name must appear once.
    :param searched: the files looked for, lowest precedence first (read or not).
    """

    def __init__(self, hosts: Sequence[HostSpec], searched: Sequence[Path] = ()) -> None:
        self._hosts = {h.name: h for h in hosts}
        self.searched = list(searched)

    @classmethod
    def read(cls, files: Sequence[Path]) -> HostsConfig:
        """The hosts of ``files`` (lowest precedence first); missing files are skipped."""
        seen: dict[str, HostSpec] = {}
        for path in reversed(files):
            if path.is_file():
                for spec in _read(path, own=path.name == USER_FILE):
                    seen.setdefault(spec.name, spec)
        return cls(list(seen.values()), files)

    def __iter__(self) -> Iterator[HostSpec]:
        return iter(self._hosts.values())

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, name: object) -> bool:
        return name in self._hosts

    def names(self) -> list[str]:
        """Host names, in order."""
        return list(self._hosts)

    def files(self) -> list[Path]:
        """The files that exist among those searched."""
        return [p for p in self.searched if p.is_file()]

    def describe_search(self) -> str:
        """The files searched, for messages."""
        return ", ".join(str(p) for p in self.searched) or "(no file)"

    def get(self, name: str) -> HostSpec:
        """The host ``name``; an unknown name lists the declared ones."""
        try:
            return self._hosts[name]
        except KeyError:
            known = ", ".join(self._hosts) or f"none (looked in {self.describe_search()})"
            hint = did_you_mean(name, self._hosts)
            raise ConfigError(f"unknown host {name!r}{hint}; declared: {known}") from None

    def build(self, name: str, plugins: PluginManager) -> Launcher:
        """The launcher of host ``name``, with the launcher types of ``plugins``."""
        return build(self.get(name), plugins)


def search_path(workspace: str | os.PathLike[str] | None = None) -> list[Path]:
    """The hosts files to read, lowest precedence first (existing or not)."""
    files = [user_file()]
    project = project_file()
    if project is not None:
        files.append(project)
    if workspace is not None:
        files.append(Path(workspace).resolve() / PROJECT_FILE)
    unique: list[Path] = []
    for path in files:
        if path in unique:
            unique.remove(path)
        unique.append(path)
    return unique


def load_hosts(workspace: str | os.PathLike[str] | None = None) -> HostsConfig:
    """The hosts of the user's file, the project's and the workspace's ``corral.toml``."""
    return HostsConfig.read(search_path(workspace))


def resolve_host(
    name: str, plugins: PluginManager, workspace: str | os.PathLike[str] | None = None
) -> Launcher | None:
    """The launcher of host ``name``, or None when no hosts file declares it."""
    config = load_hosts(workspace)
    if name not in config:
        return None
    return config.build(name, plugins)


def ssh_connector(
    name: str, plugins: PluginManager, workspace: str | os.PathLike[str] | None = None
) -> Connector:
    """The SSH connector of ``name``: a declared host's ``ssh`` key; else that of the first
    declared host reached through the ssh alias ``name`` (so that the alias a message names
    finds the hosts file's settings, such as its ssh config file); else an SSH connector to
    that ssh alias (or ``user@host:port``) as ``~/.ssh/config`` says."""
    config = load_hosts(workspace)
    if name in config:
        spec = config.get(name)
        if spec.ssh is None:
            raise ConfigError(f"{spec.where()}: host {name!r} is not reached over SSH (no 'ssh')")
        return _connector(spec, plugins)
    for spec in config:
        alias = spec.ssh if isinstance(spec.ssh, str) else (spec.ssh or {}).get("host")
        if alias == name:
            return _connector(spec, plugins)
    factory: Any = plugins.connectors.get("ssh")
    connector: Connector = factory(name)
    return connector
