"""Code snapshots: the project's Python source, frozen at submission.

::

    WORKSPACE/code/<sha256>/          one directory per distinct tree (files read-only)
      <dir>/...                       one subdirectory per import root of the project
    WORKSPACE/code/<sha256>.lock      held shared by each experiment using the snapshot

For each import root, the snapshot holds its git-tracked and untracked-but-not-ignored
``.py`` files, or every ``.py`` file (hidden directories, ``__pycache__`` and virtualenvs
skipped) when the root is not in a git work tree; never the ``corral`` package, never the
workspace itself. The hash covers the sorted relative paths and their contents, so a tree is
stored once however many experiments submit it. A job puts the snapshot's directories first
on ``sys.path`` in place of the live roots (:func:`corral.core.serialize.load_params`).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import itertools
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import ConfigError

CODE = "code"
MAX_FILES = 5000
"""Python files a snapshot may hold; above it, submission is refused."""
MAX_BYTES = 50 * 2**20
"""Bytes a snapshot may hold."""
MAX_DIRS = 20000
"""Directories walked under a root that is not in a git work tree."""
_HASH = re.compile(r"^[0-9a-f]{64}$")
_VENV_NAMES = frozenset({"site-packages", "dist-packages", "__pycache__", "node_modules"})

Files = dict[str, bytes]
"""Relative path -> content."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot in the local store: its hash, and each live root's subdirectory in it."""

    hash: str
    roots: tuple[tuple[str, str], ...]
    """``(live import root, subdirectory)`` pairs."""
    store: Path
    """The snapshot's directory in the local workspace."""

    def to_json(self) -> dict[str, Any]:
        """What ``params.json`` records of it."""
        return {"hash": self.hash, "roots": [{"path": p, "dir": d} for p, d in self.roots]}


def is_hash(name: str) -> bool:
    """Whether ``name`` is a snapshot's name (64 hex digits)."""
    return bool(_HASH.match(name))


def _too_big(root: Path, what: str) -> ConfigError:
    return ConfigError(
        f"code snapshot of {root}: {what}; submit with experiment(..., snapshot=False) or "
        "give the paths of your code with snapshot=[...]"
    )


def _excluded(path: Path, excludes: Sequence[Path]) -> bool:
    return any(path == e or e in path.parents for e in excludes)


def _in_store(rel: str) -> bool:
    """Whether a relative path runs through a snapshot store (``code/<hash>/``)."""
    parts = rel.split("/")
    return any(a == CODE and is_hash(b) for a, b in itertools.pairwise(parts))


def _git_files(root: Path) -> list[str] | None:
    """The ``.py`` files git tracks or would add under ``root``; None outside a work tree."""
    argv = ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
            "--exclude-standard", "--", "*.py"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    return sorted({n for n in names if n})


def _walk_files(root: Path, excludes: Sequence[Path]) -> list[str]:
    """Every ``.py`` file under ``root``, outside hidden directories and virtualenvs."""
    found: list[str] = []
    for dirs, (dirpath, dirnames, filenames) in enumerate(os.walk(root), 1):
        if dirs > MAX_DIRS:
            raise _too_big(root, f"more than {MAX_DIRS} directories to look through")
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _VENV_NAMES
            and not (here / d / "pyvenv.cfg").exists()
            and not _excluded(here / d, excludes)
        )
        rel = here.relative_to(root)
        for name in filenames:
            if name.endswith(".py") and not name.startswith("."):
                found.append((rel / name).as_posix())
        if len(found) > MAX_FILES:
            raise _too_big(root, f"more than {MAX_FILES} Python files")
    return sorted(found)


def collect(root: Path, excludes: Sequence[Path] = ()) -> Files:
    """The source files of the import root ``root`` (see the module docstring).

    ``excludes`` are directories left out (the workspace, the corral package).
    """
    names = _git_files(root)
    if names is None:
        names = _walk_files(root, excludes)
    files: Files = {}
    total = 0
    for rel in names:
        path = root / rel
        if _in_store(rel) or _excluded(path, excludes) or not path.is_file():
            continue
        if len(files) >= MAX_FILES:
            raise _too_big(root, f"more than {MAX_FILES} Python files")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"code snapshot: cannot read {path}: {exc.strerror}") from exc
        total += len(data)
        if total > MAX_BYTES:
            raise _too_big(root, f"more than {MAX_BYTES // 2**20} MB of Python files")
        files[rel] = data
    return files


def collect_paths(paths: Iterable[Path], excludes: Sequence[Path] = ()) -> dict[Path, Files]:
    """Files of explicit ``snapshot=[...]`` paths, by import root: a directory is a root
    (its files chosen as :func:`collect` does), a file goes under its parent directory."""
    roots: dict[Path, Files] = {}
    for path in paths:
        if path.is_dir():
            roots.setdefault(path, {}).update(collect(path, excludes))
        elif path.is_file():
            try:
                roots.setdefault(path.parent, {})[path.name] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"code snapshot: cannot read {path}: {exc.strerror}") from exc
        else:
            raise ConfigError(f"snapshot path {path} does not exist")
    return roots


def subdirectories(roots: Sequence[Path]) -> list[str]:
    """A distinct subdirectory name for each root: its base name, numbered when taken."""
    names: list[str] = []
    for root in roots:
        base = root.name or "root"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def digest(files: Files) -> str:
    """The snapshot hash: SHA-256 over the sorted relative paths and their contents."""
    h = hashlib.sha256(b"corral-snapshot\x00")
    for rel in sorted(files):
        name = rel.encode("utf-8", "surrogateescape")
        h.update(len(name).to_bytes(8, "big") + name)
        h.update(len(files[rel]).to_bytes(8, "big") + files[rel])
    return h.hexdigest()


def assemble(roots: dict[Path, Files]) -> tuple[Files, list[tuple[str, str]]]:
    """One tree of the roots' files (each under its subdirectory) and the root mapping."""
    ordered = sorted(roots)
    tree: Files = {}
    mapping = []
    for root, sub in zip(ordered, subdirectories(ordered), strict=True):
        mapping.append((str(root), sub))
        for rel, data in roots[root].items():
            tree[f"{sub}/{rel}"] = data
    return tree, mapping


# --- the store ------------------------------------------------------------------------------


def _write_tree(base: Path, files: Files) -> None:
    for rel, data in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o444)


def store(code: Path, name: str, files: Files) -> Path:
    """``code/<name>`` holding ``files``, written through a temporary directory and a rename
    unless it is there already."""
    final = code / name
    if final.is_dir():
        return final
    code.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name[:12]}-", dir=code))
    try:
        _write_tree(tmp, files)
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp)  # another client stored the same tree first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_store(directory: Path) -> Files:
    """The files of a stored snapshot (what Python cached beside them left out)."""
    files: Files = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            path = Path(dirpath) / name
            files[path.relative_to(directory).as_posix()] = path.read_bytes()
    return files


def hold(code: Path, name: str) -> int:
    """Take a shared lock on ``code/<name>.lock`` (``corral gc`` leaves a snapshot alone while
    one is held); returns the descriptor to close."""
    path = code / f"{name}.lock"
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file that gc removed while we waited for it
            return fd
        os.close(fd)


def try_exclusive(code: Path, name: str) -> int | None:
    """An exclusive lock on ``code/<name>.lock`` if nobody holds it, else None."""
    path = code / f"{name}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# --- shipping to another host -------------------------------------------------------------


def pack(directory: Path) -> str:
    """A stored snapshot as base64 of a ``.tar.gz``, for an agent's ``start`` request."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for rel, data in sorted(read_store(directory).items()):
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o444
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unpack(archive: str) -> Files:
    """The files of :func:`pack`'s archive (regular files with relative paths only)."""
    files: Files = {}
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive)), mode="r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or member.name.startswith("/") or ".." in parts:
                raise ValueError(f"snapshot archive: refusing member {member.name!r}")
            extracted = tar.extractfile(member)
            assert extracted is not None
            files[member.name] = extracted.read()
    return files


def install(entry: Mapping[str, Any]) -> None:
    """Write a snapshot of a ``start`` request where its jobs look for it, unless there:
    ``{"dir", "archive"}`` (from another machine) or ``{"dir", "source"}`` (this one)."""
    target = Path(entry["dir"])
    if target.is_dir():
        return
    source = entry.get("source")
    files = read_store(Path(source)) if source else unpack(entry["archive"])
    store(target.parent, target.name, files)
