"""``params.json``: a config tree written by the client and rebuilt inside the job.

Configs are listed in ``objects`` children first, each with its class (module, qualname and,
for a class defined in the experiment script, the script's path), its field values, tags,
``dep`` producer and identifier. Values use JSON natively where it is unambiguous and tagged
objects otherwise: ``{"$path": ...}``, ``{"$tuple": [...]}``, ``{"$dict": {...}}``,
``{"$set": [...]}`` (items in the order of their identity encodings),
``{"$enum": [class, name]}``, ``{"$config": index}``,
``{"$generated": {"producer": index, "relpath": ...}}``.

``sys_path`` lists the client's import roots of the classes (never an installed package's);
``snapshot``, when the experiment took one (:mod:`corral.core.snapshot`), names the code
snapshot and each root's subdirectory in it: the job imports from there instead.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import math
import sys
from pathlib import Path, PurePath
from typing import Any

from corral.core.classinfo import class_info
from corral.core.config import Config, children, generated_base, seal, walk
from corral.core.frozen import FrozenDict, FrozenList
from corral.core.generated import claim
from corral.core.identity import digest, encode
from corral.core.paths import (
    GeneratedPath,
    import_root_for_file,
    module_of,
)
from corral.errors import ConfigError

FORMAT = 1
_FLAGS = {"_corral_meta": "meta", "_corral_isolated": "stop_tags"}
"""Flags of a config (``setmeta``, ``stop_tags``) and their keys in its entry."""


def _class_ref(cls: type[Any]) -> dict[str, str]:
    ref = {"module": module_of(cls), "qualname": cls.__qualname__}
    if cls.__module__ == "__main__":
        main = sys.modules["__main__"]
        file = getattr(main, "__file__", None)
        if file:
            ref["file"] = str(Path(file).resolve())
    return ref


_ROOTS: dict[type[Any], str | None] = {}


def import_root(cls: type[Any]) -> str | None:
    """The sys.path entry from which the class's module imports as in the client."""
    if cls not in _ROOTS:  # a module does not move while the process runs
        _ROOTS[cls] = _find_import_root(cls)
    return _ROOTS[cls]


def _find_import_root(cls: type[Any]) -> str | None:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    if cls.__module__ == "__main__":
        return str(import_root_for_file(Path(file)))
    root = Path(file).resolve().parent
    depth = module_of(cls).count(".")
    if Path(file).name == "__init__.py":
        depth += 1
    for _ in range(depth):
        root = root.parent
    return str(root)


class _Writer:
    def __init__(self) -> None:
        self.objects: list[dict[str, Any]] = []
        self.index: dict[int, int] = {}
        self.roots: list[str] = []
        self.configs: list[Config] = []

    def add_root(self, cls: type[Any]) -> None:
        root = import_root(cls)
        installed = ("site-packages" in root or "dist-packages" in root) if root else True
        if root and not installed and root not in self.roots:
            self.roots.append(root)

    def config(self, c: Config) -> int:
        known = self.index.get(id(c))
        if known is not None:
            return known
        info = class_info(type(c))
        values = {name: self.value(c.__dict__[name]) for name in info.fields if name in c.__dict__}
        producer = c.__dict__.get("_corral_producer")
        entry: dict[str, Any] = {
            "class": _class_ref(type(c)),
            "type_id": info.type_id,
            "id": digest(c).hex(),
            "fields": values,
        }
        if producer is not None and producer is not c:
            entry["producer"] = self.config(producer)
        tags = c.__dict__.get("_corral_tags")
        if tags:
            entry["tags"] = {k: self.value(v) for k, v in tags.items()}
        for flag, key in _FLAGS.items():
            if c.__dict__.get(flag):
                entry[key] = True
        init = c.__dict__.get("_corral_init")
        if init:
            entry["init"] = [self.config(i) for i in init]
        self.add_root(type(c))
        self.index[id(c)] = len(self.objects)
        self.objects.append(entry)
        self.configs.append(c)
        return self.index[id(c)]

    def value(self, v: Any) -> Any:
        t = type(v)
        if v is None or t is bool or t is int or t is str:
            return v
        if t is float:
            return v if math.isfinite(v) else {"$float": repr(v)}
        if t is list or t is FrozenList:
            return [self.value(x) for x in v]
        if t is tuple:
            return {"$tuple": [self.value(x) for x in v]}
        if t is frozenset or t is set:
            ordered = sorted(v, key=encode)  # the same file for the same set
            return {"$set": [self.value(x) for x in ordered]}
        if t is dict or t is FrozenDict:
            return {"$dict": {k: self.value(x) for k, x in v.items()}}
        if isinstance(v, Config):
            return {"$config": self.config(v)}
        if isinstance(v, GeneratedPath) and v.has_provenance and v.producer is not None:
            return {"$generated": {"producer": self.config(v.producer), "relpath": v.relpath}}
        if isinstance(v, PurePath):
            return {"$path": str(v)}
        if isinstance(v, enum.Enum):
            self.add_root(type(v))
            return {"$enum": [_class_ref(type(v)), v.name]}
        raise ConfigError(f"cannot write a value of type {type(v).__name__} to params.json")


def dump_params(
    task: Config,
    *,
    workspace: Path,
    job_dir: Path,
    depends_on: list[str],
    snapshot: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``params.json`` content of ``task``'s job."""
    w = _Writer()
    root = w.config(task)
    data = {
        "corral": FORMAT,
        "root": root,
        "objects": w.objects,
        "sys_path": w.roots,
        "workspace": str(workspace),
        "job_dir": str(job_dir),
        "depends_on": depends_on,
    }
    if snapshot is not None:
        data["snapshot"] = snapshot
    return data


def import_roots(config: Config) -> list[str]:
    """The import roots of the classes of ``config``'s tree (configs and enums), the set
    ``sys_path`` records, without serializing the tree."""
    w = _Writer()
    for c in walk(config):
        w.add_root(type(c))
        for name in class_info(type(c)).fields:
            for v in children(c.__dict__.get(name)):
                if isinstance(v, enum.Enum):
                    w.add_root(type(v))
    return w.roots


def params_tree(config: Config) -> tuple[list[dict[str, Any]], int, list[Config]]:
    """``config``'s tree as ``params.json`` holds it: objects, root index, and the config of
    each object."""
    w = _Writer()
    root = w.config(config)
    return w.objects, root, w.configs


# --- reading, inside the job -------------------------------------------------------------------


def _load_class(ref: dict[str, str], moved: dict[str, str]) -> Any:
    module_name = ref["module"]
    module = sys.modules.get(module_name)
    if module is None:
        file = _moved(ref.get("file"), moved)
        if file and importlib.util.find_spec(module_name) is None:
            spec = importlib.util.spec_from_file_location(module_name, file)
            if spec is None or spec.loader is None:
                raise ConfigError(f"cannot import {module_name} from {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    obj: Any = module
    for part in ref["qualname"].split("."):
        obj = getattr(obj, part)
    return obj


def _moved(file: str | None, moved: dict[str, str]) -> str | None:
    """A script's path, in the snapshot when it was taken there."""
    if file is None:
        return None
    for live, copy in moved.items():
        if file.startswith(live.rstrip("/") + "/"):
            candidate = copy + file[len(live.rstrip("/")) :]
            if Path(candidate).is_file():
                return candidate
    return file


def _import_path(data: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The entries to put first on ``sys.path`` (a snapshot's directories in place of the
    live roots they copy), and the live roots moved to the snapshot."""
    entries = list(data.get("sys_path", []))
    snapshot = data.get("snapshot")
    if not snapshot:
        return entries, {}
    base = Path(data["workspace"]) / "code" / snapshot["hash"]
    if not base.is_dir():
        raise ImportError(f"the code snapshot {base} is missing (removed by corral gc?)")
    moved = {r["path"]: str(base / r["dir"]) for r in snapshot["roots"]}
    return [*moved.values(), *(e for e in entries if e not in moved)], moved


class Loaded:
    """The rebuilt config tree of a job.

    ``configs`` lists every config of ``params.json``; ``own`` those whose generated paths
    are in this job's directory: the task and the configs below it that are not below
    another task (a sub-task's tree belongs to the sub-task's own job).
    """

    def __init__(
        self, root: Config, configs: list[Config], data: dict[str, Any], own: list[Config]
    ) -> None:
        self.root = root
        self.configs = configs
        self.data = data
        self.own = own


def load_params(data: dict[str, Any]) -> Loaded:
    """Rebuild the config tree of ``params.json`` (classes imported as in the client)."""
    if data.get("corral") != FORMAT:
        raise ConfigError(f"params.json format {data.get('corral')!r} is not {FORMAT}")
    entries, moved = _import_path(data)
    for entry in reversed(entries):
        if entry in moved.values() or entry not in sys.path:
            sys.path.insert(0, entry)
    workspace = Path(data["workspace"])
    configs: list[Config] = []

    def value(v: Any) -> Any:
        if type(v) is list:
            return [value(x) for x in v]
        if type(v) is not dict:
            return v
        ((tag, payload),) = v.items()
        if tag == "$config":
            return configs[payload]
        if tag == "$path":
            return Path(payload)
        if tag == "$tuple":
            return tuple(value(x) for x in payload)
        if tag == "$dict":
            return {k: value(x) for k, x in payload.items()}
        if tag == "$set":
            return frozenset(value(x) for x in payload)
        if tag == "$float":
            return float(payload)
        if tag == "$enum":
            return getattr(_load_class(payload[0], moved), payload[1])
        if tag == "$generated":
            producer = configs[payload["producer"]]
            rel = payload["relpath"]
            path = generated_base(producer.__dict__["__taskdir__"], rel)
            return GeneratedPath.make(path, rel, producer=producer)
        raise ConfigError(f"params.json: unknown value tag {tag!r}")

    from corral.core.task import Task

    for entry in data["objects"]:
        cls = _load_class(entry["class"], moved)
        c = cls.__new__(cls)
        d = c.__dict__
        if "producer" in entry:
            d["_corral_producer"] = configs[entry["producer"]]
        if isinstance(c, Task):
            d["__taskdir__"] = workspace / "jobs" / entry["type_id"] / entry["id"]
        configs.append(c)
        d.update({name: value(v) for name, v in entry["fields"].items()})
        for f in class_info(cls).defaults:  # a default added since submission
            if f.name not in d:
                d[f.name] = f.make_default()
        if "tags" in entry:
            d["_corral_tags"] = {k: value(v) for k, v in entry["tags"].items()}
        for flag, key in _FLAGS.items():
            if entry.get(key):
                d[flag] = True
        if "init" in entry:
            d["_corral_init"] = [configs[i] for i in entry["init"]]
        d["_corral_digest"] = bytes.fromhex(entry["id"])
        seal(c)
    root = configs[data["root"]]
    job_dir = Path(data["job_dir"])
    root.__dict__["__taskdir__"] = job_dir
    for c in configs:
        c.__dict__["__maintaskdir__"] = job_dir
    # The same owners as in the client: the generated paths of a config below a sub-task
    # are where that sub-task's job made them.
    own = [root, *claim(root)]
    for task in configs:
        if isinstance(task, Task) and task is not root:
            claim(task, first_wins=True)
    return Loaded(root, configs, data, own)
