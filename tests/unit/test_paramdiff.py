"""Identities recomputed from params.json values, and the differences between two trees."""

from __future__ import annotations

import pytest

from corral import Config, Meta, Param
from corral.core.classinfo import class_info
from corral.core.paramdiff import Comparison, Difference, Tree, entry_digest, in_identity
from corral.core.serialize import params_tree
from tests.unit import identity_vectors


def tree(config: Config) -> Tree:
    objects, root, configs = params_tree(config)
    return Tree(objects, root, {i: type(c) for i, c in enumerate(configs)})


@pytest.mark.parametrize("name", sorted(identity_vectors.build()))
def test_identity_recomputed_from_stored_values_matches_every_golden_vector(name):
    t = tree(identity_vectors.build()[name])  # every vector is a config a job can hold
    for i, entry in enumerate(t.objects):
        names = in_identity(entry, t.objects, class_info(t.classes[i]))
        assert entry_digest(entry, t.objects, names) == entry["id"], (name, entry["type_id"])


class Inner(Config, id="diff.Inner"):
    size: Param[int] = 4


class Outer(Config, id="diff.Outer"):
    inner: Param[Inner]
    items: Param[list[Inner]] = []
    rate: Param[float] = 0.5
    note: Meta[str] = ""


def test_values_that_differ_are_listed_by_path():
    old = tree(Outer(inner=Inner(size=1), items=[Inner(), Inner(size=2)], note="a"))
    new = tree(Outer(inner=Inner(size=3), items=[Inner(), Inner(size=5)], note="b", rate=0.25))
    found = {d.path: d for d in Comparison(old, new)}
    assert str(found["inner.size"]) == "inner.size: 1 → 3"
    assert str(found["items[1].size"]) == "items[1].size: 2 → 5"
    assert found["rate"].before == "0.5" and found["rate"].identity
    assert found["note"].identity is False and "meta" in found["note"].note
    assert "items[0].size" not in found


class Other(Config, id="diff.Other"):
    size: Param[int] = 4


class Holder(Config, id="diff.Holder"):
    part: Param[Config]


def test_identical_trees_have_no_difference_and_a_class_change_is_one_line():
    assert list(Comparison(tree(Outer(inner=Inner())), tree(Outer(inner=Inner())))) == []
    (only,) = Comparison(tree(Holder(part=Inner())), tree(Holder(part=Other())))
    assert only == Difference("part", "Inner", "Other", "another class")
