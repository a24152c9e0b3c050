"""Sealing makes the list and dict values of a config read-only, at any depth."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from corral import Config, ConfigError, Meta, Param, identifier, tag
from corral.core.frozen import FrozenDict, FrozenList
from corral.core.identity import encode
from tests.seed_tasks import Model

SEALED = "cannot modify, the config is sealed"


class Holder(Config):
    xs: Param[list[int]]
    table: Param[dict[str, list[int]]] = {}
    nested: Param[list[dict[str, list[int]]]] = []
    pairs: Param[tuple[list[int], ...]] = ()
    models: Param[list[Model]] = []
    anything: Param[Any] = None
    hosts: Meta[list[str]] = []


def holder() -> Holder:
    return Holder(
        xs=[1, 2],
        table={"a": [1], "b": []},
        nested=[{"k": [3, 4]}],
        pairs=([5], [6, 7]),
        models=[Model(hidden=3)],
        anything={"l": [1, {"d": 2}], "t": (1, [2])},
        hosts=["h1"],
    )


MUTATIONS = {
    "append": lambda h: h.xs.append(3),
    "extend": lambda h: h.xs.extend([3]),
    "insert": lambda h: h.xs.insert(0, 3),
    "setitem": lambda h: h.xs.__setitem__(0, 9),
    "setslice": lambda h: h.xs.__setitem__(slice(0, 1), [9, 9]),
    "delitem": lambda h: h.xs.__delitem__(0),
    "pop": lambda h: h.xs.pop(),
    "remove": lambda h: h.xs.remove(1),
    "clear": lambda h: h.xs.clear(),
    "sort": lambda h: h.xs.sort(reverse=True),
    "reverse": lambda h: h.xs.reverse(),
    "imul": lambda h: h.xs.__imul__(2),
    "reinit": lambda h: h.xs.__init__([9]),
    "dict-setitem": lambda h: h.table.__setitem__("c", []),
    "dict-delitem": lambda h: h.table.__delitem__("a"),
    "dict-update": lambda h: h.table.update(c=[]),
    "dict-setdefault": lambda h: h.table.setdefault("c", []),
    "dict-pop": lambda h: h.table.pop("a"),
    "dict-popitem": lambda h: h.table.popitem(),
    "dict-clear": lambda h: h.table.clear(),
    "dict-ior": lambda h: h.table.__ior__({"c": []}),
    "dict-reinit": lambda h: h.table.__init__({"c": []}),
    "list-in-dict": lambda h: h.table["a"].append(2),
    "dict-in-list": lambda h: h.nested[0].__setitem__("k", []),
    "list-in-dict-in-list": lambda h: h.nested[0]["k"].append(5),
    "list-in-tuple": lambda h: h.pairs[0].append(1),
    "any-nested": lambda h: h.anything["l"][1].update(e=3),
    "any-in-tuple": lambda h: h.anything["t"][1].append(3),
    "meta": lambda h: h.hosts.append("h2"),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_after_identifier_no_container_value_can_change(mutate):
    h = holder()
    before = identifier(h)
    snapshot = json.dumps([h.xs, h.table, h.nested, h.pairs, h.anything, h.hosts])
    with pytest.raises(ConfigError, match=rf"^Holder\.\w+: {SEALED}"):
        mutate(h)
    assert json.dumps([h.xs, h.table, h.nested, h.pairs, h.anything, h.hosts]) == snapshot
    h.__dict__.pop("_corral_digest")  # recompute from the values: still the same identity
    assert identifier(h) == before


def test_in_place_operator_is_refused_and_names_the_param():
    h = holder()
    identifier(h)
    with pytest.raises(ConfigError, match=rf"Holder\.xs: {SEALED}"):
        h.xs += [3]
    with pytest.raises(ConfigError, match=rf"Holder\.table: {SEALED}"):
        h.table |= {"c": []}
    assert h.xs == [1, 2] and "c" not in h.table


def test_before_sealing_containers_are_plain_and_mutable():
    h = holder()
    h.xs.append(3)
    h.table["a"].append(2)
    assert type(h.xs) is list and type(h.table) is dict
    assert h.xs == [1, 2, 3]


def test_sealing_a_parent_seals_the_containers_of_nested_configs():
    class Parent(Config):
        child: Param[Holder]

    p = Parent(child=holder())
    identifier(p)
    with pytest.raises(ConfigError, match=rf"Holder\.xs: {SEALED}"):
        p.child.xs.append(3)


def test_read_only_values_behave_as_lists_and_dicts():
    h = holder()
    identifier(h)
    assert isinstance(h.xs, list) and isinstance(h.table, dict)
    assert h.xs == [1, 2] and h.xs != [2, 1] and h.xs != (1, 2)
    assert h.table == {"a": [1], "b": []}
    assert h.nested == [{"k": [3, 4]}]
    assert type(h.pairs) is tuple and h.pairs == ([5], [6, 7])
    assert list(h.xs) == [1, 2] and h.xs[-1] == 2 and h.xs[:1] == [1] and len(h.xs) == 2
    assert sorted(h.table) == ["a", "b"] and h.table["a"] == [1] and h.table.get("z") is None
    assert h.xs + [3] == [1, 2, 3]  # noqa: RUF005 (the operator is what is tested)
    assert h.table | {"c": []} == {"a": [1], "b": [], "c": []}
    assert repr(h.xs) == "[1, 2]" and repr(h.table) == "{'a': [1], 'b': []}"
    assert json.loads(json.dumps({"xs": h.xs, "table": h.table})) == {
        "xs": [1, 2],
        "table": {"a": [1], "b": []},
    }
    assert isinstance(h.models[0], Model) and h.models[0].hidden == 3


def test_copies_are_plain_and_mutable():
    h = holder()
    identifier(h)
    for copied in (h.xs.copy(), list(h.xs), h.xs[:], h.xs + [], sorted(h.xs)):  # noqa: RUF005
        copied.append(3)
        assert type(copied) is list
    table = h.table.copy()
    table["c"] = []
    assert type(table) is dict and "c" not in h.table


def test_values_of_a_sealed_config_give_a_new_config_mutable_values():
    h = holder()
    identifier(h)
    other = Holder(xs=h.xs, table=h.table, anything=h.anything)
    other.xs.append(3)
    other.table["c"] = [1]
    other.anything["l"].append(4)
    assert h.xs == [1, 2] and "c" not in h.table and len(h.anything["l"]) == 2


def test_identity_encoding_is_unchanged():
    h = holder()
    plain = [encode(v) for v in (h.xs, h.table, h.nested, h.pairs, h.anything)]
    ident = identifier(h)
    assert type(h.xs) is FrozenList and type(h.table) is FrozenDict
    assert [encode(v) for v in (h.xs, h.table, h.nested, h.pairs, h.anything)] == plain
    assert encode(FrozenList([1])) == encode([1]) != encode((1,))
    assert encode(FrozenDict({"a": 1})) == encode({"a": 1})
    rebuilt = Holder(xs=[1, 2], table={"b": [], "a": [1]}, nested=[{"k": [3, 4]}],
                     pairs=([5], [6, 7]), models=[Model(hidden=3)],
                     anything={"l": [1, {"d": 2}], "t": (1, [2])}, hosts=["other"])
    assert identifier(rebuilt) == ident


def test_pickle_and_copy_keep_values_and_protection():
    h = holder()
    ident = identifier(h)
    for clone in (pickle.loads(pickle.dumps(h)), copy.deepcopy(h), copy.copy(h)):
        assert clone.xs == [1, 2] and clone.table == {"a": [1], "b": []}
        assert identifier(clone) == ident
        with pytest.raises(ConfigError, match=rf"Holder\.xs: {SEALED}"):
            clone.xs.append(3)
    assert pickle.loads(pickle.dumps(h.nested)) == [{"k": [3, 4]}]


def test_list_and_dict_tags_are_read_only_too():
    h = Holder(xs=[1], anything=tag([1, 2]))
    identifier(h)
    assert h.__tags__ == {"anything": [1, 2]}
    with pytest.raises(ConfigError, match=rf"Holder\.anything \(tag\): {SEALED}"):
        h.__tags__["anything"].append(3)


def test_list_constant_is_not_shared_between_instances():
    from corral import Constant

    class Versioned(Config):
        steps: Constant[list[str]] = ["a"]

    given = Versioned(steps=["a"])
    given.steps.append("b")  # not sealed yet: changes this instance only
    assert Versioned().steps == ["a"] and Versioned(steps=["a"]).steps == ["a"]
