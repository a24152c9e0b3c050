"""Operations on built configs: copy with changes, mark as meta, isolate tags."""

from __future__ import annotations

from typing import Any, TypeVar

from corral.core.classinfo import class_info
from corral.core.config import Config, _unknown_message
from corral.core.frozen import thaw
from corral.errors import ConfigError

C = TypeVar("C", bound=Config)

_COPIED_FLAGS = ("_corral_meta", "_corral_isolated", "_corral_producer")


def copyconfig(config: C, **changes: Any) -> C:
    """A new, unsealed config of the same class with the same values, and ``changes``
    applied (validated as at construction). Nested configs are copied too, so the copy owns
    its generated paths; tasks inside it (dependencies) are shared, not copied."""
    from corral.core.task import Task

    if not isinstance(config, Config):
        raise ConfigError(f"copyconfig() takes a Config, got {type(config).__name__}")
    cls = type(config)
    info = class_info(cls)
    for name in changes:
        f = info.fields.get(name)
        if f is None or name in info.generated:
            raise ConfigError(_unknown_message(cls, info, name))
    memo: dict[int, Config] = {}

    def copy_value(v: Any) -> Any:
        if isinstance(v, Config):
            return v if isinstance(v, Task) else copy_config(v)
        if isinstance(v, list):
            return [copy_value(x) for x in v]
        if isinstance(v, tuple):
            return tuple(copy_value(x) for x in v)
        if isinstance(v, dict):
            return {k: copy_value(x) for k, x in v.items()}
        if isinstance(v, frozenset):
            return frozenset(copy_value(x) for x in v)
        return thaw(v)

    def copy_config(c: Config) -> Config:
        done = memo.get(id(c))
        if done is not None:
            return done
        new = type(c).__new__(type(c))
        memo[id(c)] = new
        d, nd = c.__dict__, new.__dict__
        for name in class_info(type(c)).value_fields:
            if name in d:
                nd[name] = copy_value(d[name])
        if d.get("_corral_tags"):
            nd["_corral_tags"] = {k: thaw(v) for k, v in d["_corral_tags"].items()}
        for flag in _COPIED_FLAGS:
            if flag in d:
                nd[flag] = d[flag]
        if "_corral_init" in d:
            nd["_corral_init"] = [copy_config(i) for i in d["_corral_init"]]
        return new

    copied = copy_config(config)
    for name, value in changes.items():
        setattr(copied, name, value)
    return copied  # type: ignore[return-value]  # copy_config keeps the class


def setmeta(config: C, meta: bool = True) -> C:
    """Mark ``config`` as meta (or not): used as a value, it is kept in ``params.json`` but
    left out of the identity of the config holding it, as a ``Meta`` field would be (a
    field whose value it is is not listed; in a list, tuple, set or dict, the item is left
    out). Mark it before the holder's identifier is taken. Returns ``config``."""
    if not isinstance(config, Config):
        raise ConfigError(f"setmeta() takes a Config, got {type(config).__name__}")
    if meta:
        config.__dict__["_corral_meta"] = True
    else:
        config.__dict__.pop("_corral_meta", None)
    return config


def is_meta(value: Any) -> bool:
    """Whether ``value`` is a config marked with :func:`setmeta`."""
    return isinstance(value, Config) and bool(value.__dict__.get("_corral_meta"))


def stop_tags(config: C) -> C:
    """Stop tag propagation at ``config``: its tags and those of the configs inside it stay
    in its own ``__tags__`` and do not reach the configs that contain it. Returns it."""
    if not isinstance(config, Config):
        raise ConfigError(f"stop_tags() takes a Config, got {type(config).__name__}")
    config.__dict__["_corral_isolated"] = True
    return config
