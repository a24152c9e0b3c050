"""Identity: golden vectors, the spec of docs/identity.md, and the identity properties."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from corral import Config, ConfigError, Meta, Param, Task, identifier, setmeta, tag
from corral.core.classinfo import fields
from corral.core.fields import Kind
from corral.core.identity import HASH_VERSION, type_id
from corral.core.paths import GeneratedPath
from corral.core.task import Dep
from tests.seed_tasks import Dataset, Documents, Model, ModelLearn, RandomFold, Topics
from tests.unit import identity_vectors

REPO = Path(__file__).resolve().parents[2]


# --- golden vectors ---------------------------------------------------------------------------


def test_golden_vectors_pin_at_least_30_identifiers():
    data = json.loads(identity_vectors.VECTORS_FILE.read_text())
    assert data["hash_version"] == HASH_VERSION, "HASH_VERSION changed: regenerate the vectors"
    assert len(data["vectors"]) >= 30
    assert identity_vectors.compute() == data["vectors"]


def test_golden_vector_equalities():
    v = identity_vectors.compute()
    assert v["float-1.0"] == v["float-from-int-1"]
    assert v["float-negative-zero"] == identifier(identity_vectors.Num(x=0.0))
    assert v["path-absolute"] == v["path-unnormalized"]  # "/data//./set/" is "/data/set"
    assert v["path-relative"] != v["path-absolute"]
    assert v["dict"] == v["dict-reordered"]
    assert v["defaults-all"] == v["defaults-explicit-equal"] != v["defaults-changed"]
    assert v["tagged"] == identifier(identity_vectors.Value(v=5))
    assert v["meta-excluded"] == identifier(identity_vectors.WithMeta(a=1))
    assert v["set"] == v["set-reordered"]  # order and repeats do not count
    assert v["set-empty-is-default"] == identifier(identity_vectors.Sets())
    other = identity_vectors.Holder(inner=setmeta(identity_vectors.Inner(n=99)), n=1)
    assert v["setmeta-excluded"] == identifier(other)
    assert v["init-tasks"] != identifier(identity_vectors.Run())  # init tasks count, in order
    assert len(set(v.values())) == len(v) - 5  # exactly the equal pairs above


def test_golden_partial_identifiers():
    data = json.loads(identity_vectors.VECTORS_FILE.read_text())
    p = identity_vectors.partials()
    assert p == data["partials"]
    assert p["run-without-epochs"] == p["run-without-epochs-other-value"]
    assert len(set(p.values())) == len(p) - 1
    full = identity_vectors.compute()
    assert not set(p.values()) & set(full.values())  # never an identifier of a config


# --- an independent implementation of docs/identity.md -------------------------------------


def _lp(b: bytes) -> bytes:
    return struct.pack(">Q", len(b)) + b


def _spec_enc(v: Any) -> bytes:
    if v is None:
        return b"N"
    if isinstance(v, bool):
        return b"B" + (b"\x01" if v else b"\x00")
    if isinstance(v, int) and not isinstance(v, enum.Enum):
        return b"I" + _lp(str(v).encode())
    if isinstance(v, float):
        if math.isnan(v):
            return b"F" + bytes.fromhex("7ff8000000000000")
        return b"F" + struct.pack(">d", 0.0 if v == 0 else v)
    if isinstance(v, str):
        return b"S" + _lp(v.encode())
    if isinstance(v, GeneratedPath) and v.producer is not None and v.relpath:
        return b"G" + _spec_digest(v.producer) + _lp(v.relpath.encode())
    if isinstance(v, Path):
        return b"P" + _lp(str(PurePosixPath(str(v))).encode())
    if isinstance(v, enum.Enum):
        cls = type(v)
        return b"E" + _lp(f"{cls.__module__}.{cls.__qualname__}".encode()) + _lp(v.name.encode())
    if isinstance(v, list | tuple | set | frozenset | dict):  # setmeta: items left out
        if isinstance(v, dict):
            v = {k: x for k, x in v.items() if not _meta(x)}
        else:
            v = type(v)(x for x in v if not _meta(x)) if not isinstance(v, list) else [
                x for x in v if not _meta(x)]
    if isinstance(v, list | tuple):
        tag_ = b"L" if isinstance(v, list) else b"T"
        return tag_ + struct.pack(">Q", len(v)) + b"".join(_spec_enc(x) for x in v)
    if isinstance(v, set | frozenset):
        items = sorted({_spec_enc(x) for x in v})
        return b"U" + struct.pack(">Q", len(items)) + b"".join(items)
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode())
        body = b"".join(_lp(k.encode()) + _spec_enc(v[k]) for k in keys)
        return b"D" + struct.pack(">Q", len(v)) + body
    if isinstance(v, Config):
        return b"C" + _spec_digest(v)
    raise TypeError(v)


def _meta(v: Any) -> bool:
    return isinstance(v, Config) and bool(v.__dict__.get("_corral_meta"))


def _spec_digest(c: Config, without: frozenset[str] = frozenset()) -> bytes:
    listed = []
    for name, f in fields(c).items():
        if name in without:
            continue
        if f.kind is Kind.CONSTANT:
            listed.append((name, c.__dict__[name]))
        elif f.kind is Kind.PARAM:
            value = c.__dict__[name]
            if _meta(value):
                continue  # setmeta: left out like a Meta field
            if f.has_default and _spec_enc(value) == _spec_enc(f.make_default()):
                continue
            listed.append((name, value))
    listed.sort(key=lambda item: item[0].encode())
    init = c.__dict__.get("_corral_init")
    if init:  # listed last, after the sorted fields
        listed.append(("__init_tasks__", list(init)))
    producer = c.__dict__.get("_corral_producer")
    if without:
        data = b"corral-partial\x00" + struct.pack(">Q", HASH_VERSION) + _lp(type_id(c).encode())
        data += struct.pack(">Q", len(without))
        data += b"".join(_lp(n.encode()) for n in sorted(without, key=str.encode))
    else:
        data = b"corral-config\x00" + struct.pack(">Q", HASH_VERSION) + _lp(type_id(c).encode())
    data += b"\x00" if producer is None or producer is c else b"\x01" + _spec_digest(producer)
    data += struct.pack(">Q", len(listed))
    data += b"".join(_lp(n.encode()) + _spec_enc(v) for n, v in listed)
    return hashlib.sha256(data).digest()


def test_spec_reimplementation_matches_the_partial_identifiers():
    v = identity_vectors
    expected = json.loads(v.VECTORS_FILE.read_text())["partials"]
    assert _spec_digest(v.Run(epochs=20), frozenset({"epochs"})).hex() == expected[
        "run-without-epochs"]
    schedule = frozenset({"epochs", "seed"})  # the group "schedule", resolved to its params
    assert _spec_digest(v.Run(lr=0.5, epochs=3, seed=4), schedule).hex() == expected[
        "run-without-schedule"]
    assert _spec_digest(v.Run(lr=0.5), frozenset({"lr"})).hex() == expected["run-without-lr"]


@pytest.mark.parametrize("name", sorted(identity_vectors.build()))
def test_spec_reimplementation_matches_every_vector(name):
    config = identity_vectors.build()[name]
    expected = json.loads(identity_vectors.VECTORS_FILE.read_text())["vectors"][name]
    assert _spec_digest(config).hex() == expected


# --- properties -------------------------------------------------------------------------------


class Anything(Config):
    v: Param[Any]


class Floaty(Config):
    x: Param[float]


def test_identifier_is_64_hex():
    ident = identifier(Model())
    assert len(ident) == 64 and int(ident, 16) >= 0 and ident == ident.lower()


def test_true_and_1_differ_list_and_tuple_differ():
    assert identifier(Anything(v=True)) != identifier(Anything(v=1))
    assert identifier(Anything(v=[1, 2])) != identifier(Anything(v=(1, 2)))
    assert identifier(Anything(v="1")) != identifier(Anything(v=1))
    assert identifier(Anything(v=1.0)) != identifier(Anything(v=1))  # Any keeps the type


def test_int_and_float_equal_for_a_float_param():
    assert identifier(Floaty(x=1)) == identifier(Floaty(x=1.0))


def test_dict_order_does_not_matter():
    a = Anything(v={"x": 1, "y": [2, 3]})
    b = Anything(v={"y": [2, 3], "x": 1})
    assert identifier(a) == identifier(b)


def test_no_ambiguity_between_nested_containers():
    values = [[["a"], "b"], [["a", "b"]], ["a", ["b"]], ["ab"], "ab", ("a", "b"), {"a": "b"}]
    ids = {identifier(Anything(v=v)) for v in values}
    assert len(ids) == len(values)


def test_nested_config_contributes_its_identity():
    a = ModelLearn(model=Model(hidden=1))
    b = ModelLearn(model=Model(hidden=2))
    assert identifier(a) != identifier(b)
    assert identifier(ModelLearn(model=Model(hidden=1))) == identifier(a)


def test_default_valued_param_is_excluded():
    assert identifier(ModelLearn(model=Model())) == identifier(
        ModelLearn(model=Model(hidden=128), epochs=100)
    )


class VersionOne(Config, id="tests.Versioned"):
    a: Param[int]


class VersionTwo(Config, id="tests.Versioned"):
    a: Param[int]
    added: Param[str] = "default"  # a new param with a default keeps old identifiers
    note: Meta[str] = "meta"


def test_adding_a_param_with_default_keeps_identifiers():
    assert identifier(VersionOne(a=1)) == identifier(VersionTwo(a=1))
    assert identifier(VersionOne(a=1)) != identifier(VersionTwo(a=1, added="other"))
    assert identifier(VersionTwo(a=1, note="x")) == identifier(VersionTwo(a=1))


def test_tags_never_enter_the_identity():
    assert identifier(Model(hidden=tag(3))) == identifier(Model(hidden=3))


def test_explicit_id_is_used_and_not_inherited():
    class Sub(VersionOne):
        pass

    assert type_id(VersionOne) == "tests.Versioned"
    assert type_id(Sub).endswith("test_explicit_id_is_used_and_not_inherited.<locals>.Sub")
    assert type_id(Model) == "tests.seed_tasks.Model"


def test_generated_paths_are_excluded_from_the_task_identity():
    learn = ModelLearn(model=Model())
    before = identifier(ModelLearn(model=Model()))
    learn.__taskdir__ = Path("/somewhere/else")
    assert identifier(learn) == before


def test_generated_path_used_elsewhere_is_independent_of_the_workspace():
    def plan(workspace: str) -> str:
        fold = RandomFold(dataset=Dataset(topics=Topics(path="/t"), documents=Documents(path="/d")))
        fold.__taskdir__ = Path(workspace) / "jobs" / type_id(fold) / identifier(fold)
        topics = Topics(path=fold.topics)
        assert str(topics.path).startswith(workspace)
        return identifier(topics)

    assert plan("/ws/one") == plan("/other/ws") == plan("/tmp/x")


def test_generated_path_identity_depends_on_producer():
    def topics_of(path: str) -> str:
        fold = RandomFold(dataset=Dataset(topics=Topics(path=path), documents=Documents(path="/d")))
        return identifier(Topics(path=fold.topics))

    assert topics_of("/a") != topics_of("/b")
    assert topics_of("/a") == topics_of("/a")


def test_derived_path_is_a_plain_path():
    fold = RandomFold(dataset=Dataset(topics=Topics(path="/t"), documents=Documents(path="/d")))
    fold.__taskdir__ = Path("/ws/x")
    derived = fold.topics.parent
    assert not derived.has_provenance
    assert identifier(Topics(path=derived)) == identifier(Topics(path="/ws/x"))


def test_dep_marked_config_includes_producer_identity():
    def outputs(topics_path: str) -> Dataset:
        fold = RandomFold(
            dataset=Dataset(topics=Topics(path=topics_path), documents=Documents(path="/d"))
        )
        return fold.task_outputs(Dep(fold))

    a, b = outputs("/a"), outputs("/b")
    assert identifier(a) != identifier(b)
    plain = Dataset(topics=Topics(path="/x"), documents=Documents(path="/d"))
    assert identifier(a.documents) == identifier(plain.documents)  # not marked: no producer


def test_dep_on_sealed_config_is_refused():
    fold = RandomFold(dataset=Dataset(topics=Topics(path="/t"), documents=Documents(path="/d")))
    sealed = Model()
    identifier(sealed)
    with pytest.raises(ConfigError, match="cannot mark with dep"):
        Dep(fold)(sealed)


def test_cycle_is_detected():
    class Node(Config):
        child: Param[Any] = None

    a, b = Node(), Node()
    a.child = b
    b.child = a
    with pytest.raises(ConfigError, match="cycle"):
        identifier(a)


def test_unhashable_value_in_any_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot hash a value of type bytes"):
        identifier(Anything(v=b"raw"))


def test_identifier_of_a_non_config():
    with pytest.raises(ConfigError, match="identifier\\(\\) takes a Config, got int"):
        identifier(3)  # type: ignore[arg-type]


_SNIPPET = """
from corral import identifier
from tests.seed_tasks import Model, ModelLearn
from tests.unit.identity_vectors import Value
print(identifier(ModelLearn(model=Model(hidden=3))), identifier(Value(v={"a": 1, "b": {"c"}.pop()})))
"""


def test_independent_of_process_and_hash_seed():
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _SNIPPET],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(out.stdout.strip())
    assert len(outputs) == 1
    here = f"{identifier(ModelLearn(model=Model(hidden=3)))} {identifier(identity_vectors.Value(v={'a': 1, 'b': 'c'}))}"
    assert outputs == {here}


_SCRIPT = """
from corral import Config, Param, identifier
from corral.core.identity import type_id

class Exp(Config):
    x: Param[int]

if __name__ == "__main__":
    print(type_id(Exp), identifier(Exp(x=1)))
"""


@pytest.mark.parametrize("in_package", [False, True])
def test_class_in_the_running_script_gets_its_import_name(tmp_path, in_package):
    root = tmp_path / "proj"
    where = root / "pkg" if in_package else root
    where.mkdir(parents=True)
    if in_package:
        (where / "__init__.py").write_text("")
    (where / "exp.py").write_text(textwrap.dedent(_SCRIPT))
    module = "pkg.exp" if in_package else "exp"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(where / "exp.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    type_name, ident = run.stdout.split()
    assert type_name == f"{module}.Exp"
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {module} as m; from corral import identifier; print(identifier(m.Exp(x=1)))",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == ident
    as_module = subprocess.run(
        [sys.executable, "-m", module],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert as_module.stdout.split() == [type_name, ident]


def test_enum_values_hash_by_qualified_name():
    class Mode(enum.Enum):
        A = 1
        B = 2

    class WithMode(Config):
        mode: Param[Mode]

    assert identifier(WithMode(mode=Mode.A)) != identifier(WithMode(mode=Mode.B))


def test_a_task_used_as_param_contributes_its_identity():
    class Evaluate(Task):
        learned: Param[ModelLearn]

    a = Evaluate(learned=ModelLearn(model=Model(hidden=1)))
    b = Evaluate(learned=ModelLearn(model=Model(hidden=2)))
    assert identifier(a) != identifier(b)


def test_interactive_class_builds_but_needs_a_module_or_id_for_its_identity():
    code = (
        "from corral import Config, Param, identifier\n"
        "class M(Config):\n    x: Param[int] = 1\n"
        "class N(Config, id='demo.N'):\n    x: Param[int] = 1\n"
        "print(M(x=2))\n"
        "print(len(identifier(N(x=2))))\n"
        "identifier(M(x=2))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split("\n")[:2] == ["M(x=2)", "64"]
    assert out.stderr.strip().splitlines()[-1] == (
        "corral.errors.ConfigError: a class defined in an interactive session has no stable "
        "type id: move it to a module, or give it one with `class X(Config, id='my.X')`"
    )
