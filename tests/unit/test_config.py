"""Declaring and building configs: fields, types, defaults, errors, sealing, tags."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import pytest

from corral import (
    Config,
    ConfigError,
    Constant,
    Meta,
    Param,
    Task,
    field,
    identifier,
    pathgenerator,
    tag,
)
from corral.core.classinfo import fields
from tests.seed_tasks import Dataset, Documents, Model, ModelLearn, RandomFold, Topics


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Everything(Config):
    flag: Param[bool] = False
    count: Param[int] = 0
    rate: Param[float] = 0.5
    name: Param[str] = "x"
    where: Param[Path] = Path("/tmp")
    color: Param[Color] = Color.RED
    maybe: Param[Optional[int]]
    union: Param[int | str] = 0
    mode: Param[Literal["a", "b"]] = "a"
    items: Param[list[int]] = field(default_factory=list)
    pair: Param[tuple[int, str]] = (0, "")
    many: Param[tuple[float, ...]] = ()
    mapping: Param[dict[str, int]] = field(default_factory=dict)
    model: Param[Model] = field(default_factory=Model)
    models: Param[list[Model]] = field(default_factory=list)
    named: Param[dict[str, Model]] = field(default_factory=dict)
    anything: Param[Any] = None
    device: Meta[str] = "cpu"
    version: Constant[int] = 2
    plain: int = 3  # a plain annotation: an ordinary class attribute, not a field
    KIND: ClassVar[str] = "everything"


class Documented(Config):
    size: Param[int] = 1
    """The size, in units."""

    other: Param[int] = field(default=2, help="Given with field().")


def test_seed_model_learn_declares_required_after_default():
    learn = ModelLearn(model=Model())
    assert learn.epochs == 100
    assert isinstance(learn.model, Model)
    info = fields(ModelLearn)
    assert list(info) == ["epochs", "model", "parameters"]
    assert info["model"].required and not info["epochs"].required
    assert info["parameters"].relpath == "parameters.pth"


def test_seed_random_fold_docstrings_are_help_text():
    info = fields(RandomFold)
    assert info["dataset"].help == "The source dataset"
    assert info["topics"].help == "Generated topics"
    assert fields(Documented)["size"].help == "The size, in units."
    assert fields(Documented)["other"].help == "Given with field()."
    assert fields(Model)["hidden"].help is None


def test_all_supported_types_accept_their_values():
    e = Everything(
        flag=True,
        count=3,
        rate=2,
        name="n",
        where="/data/x",
        color=Color.BLUE,
        maybe=None,
        union="s",
        mode="b",
        items=[1, 2],
        pair=(1, "a"),
        many=(1, 2.5),
        mapping={"a": 1},
        model=Model(hidden=3),
        models=[Model()],
        named={"m": Model()},
        anything={"free": [1, "form"]},
        device="cuda",
    )
    assert e.rate == 2.0 and type(e.rate) is float
    assert e.where == Path("/data/x") and isinstance(e.where, Path)
    assert e.many == (1.0, 2.5) and type(e.many[0]) is float
    assert e.version == 2
    assert e.plain == 3
    assert "plain" not in fields(Everything) and "KIND" not in fields(Everything)
    assert len(identifier(e)) == 64


def test_optional_without_default_defaults_to_none():
    assert Everything().maybe is None


def test_defaults_are_fresh_per_instance():
    a, b = Everything(), Everything()
    a.items.append(1)
    assert b.items == []
    assert a.model is not b.model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": "3"}, "Everything.count: expected int, got str"),
        ({"count": True}, "Everything.count: expected int, got bool"),
        ({"flag": 1}, "Everything.flag: expected bool, got int"),
        ({"rate": "0.1"}, "Everything.rate: expected float, got str"),
        ({"name": 3}, "Everything.name: expected str, got int"),
        ({"where": 3}, "Everything.where: expected Path, got int"),
        ({"color": 1}, "Everything.color: expected Color, got int"),
        ({"maybe": 1.5}, "Everything.maybe: expected int | None, got float"),
        ({"mode": "c"}, "Everything.mode: expected Literal['a', 'b'], got str"),
        ({"items": (1, 2)}, "Everything.items: expected list[int], got tuple"),
        ({"items": [1, "2"]}, "expected list[int], got list (at items[1]: str '2')"),
        ({"pair": (1, 2)}, "Everything.pair: expected tuple[int, str], got tuple"),
        ({"mapping": {1: 1}}, "Everything.mapping: expected dict[str, int], got dict"),
        ({"model": Documents(path="/x")}, "Everything.model: expected Model, got Documents"),
        ({"models": [Model(), 3]}, "(at models[1]: int 3)"),
    ],
)
def test_wrong_type_names_class_param_expected_and_given(kwargs, message):
    with pytest.raises(ConfigError) as e:
        Everything(**kwargs)
    assert message in str(e.value)
    assert str(e.value).startswith("Everything.")


def test_unknown_keyword_lists_valid_params():
    with pytest.raises(ConfigError) as e:
        Model(hiden=3)
    assert str(e.value) == "Model: unknown param 'hiden' (did you mean 'hidden'?); valid: hidden"


def test_generated_path_cannot_be_given():
    with pytest.raises(ConfigError, match="parameters is a generated path"):
        ModelLearn(model=Model(), parameters="/x")


def test_positional_arguments_are_refused():
    with pytest.raises(ConfigError, match=r"Model\(\) takes keyword arguments only"):
        Model(3)


def test_missing_required_param_raises_at_identifier_naming_it():
    learn = ModelLearn()
    with pytest.raises(ConfigError, match=r"ModelLearn: missing required param\(s\) 'model'"):
        identifier(learn)
    learn.model = Model()  # still settable: the failed attempt did not seal it
    assert len(identifier(learn)) == 64


def test_unset_param_attribute_error_is_clear():
    with pytest.raises(AttributeError, match="ModelLearn.model is not set"):
        _ = ModelLearn().model


def test_constant_cannot_be_changed():
    assert Everything(version=2).version == 2
    with pytest.raises(ConfigError, match=r"Everything.version is a Constant \(2\)"):
        Everything(version=3)


def test_constant_needs_a_value():
    with pytest.raises(ConfigError, match="Bad.v: a Constant needs a value"):

        class Bad(Config):
            v: Constant[int]


def test_sealed_after_identifier():
    m = Model()
    m.hidden = 3  # allowed before sealing, and validated
    with pytest.raises(ConfigError, match="expected int"):
        m.hidden = "x"
    identifier(m)
    with pytest.raises(ConfigError, match="Model.hidden: cannot assign, the config is sealed"):
        m.hidden = 4
    assert m.hidden == 3


def test_sealing_seals_nested_configs():
    inner = Model()
    outer = ModelLearn(model=inner)
    identifier(outer)
    with pytest.raises(ConfigError, match="sealed"):
        inner.hidden = 1


def test_non_field_attributes_stay_free():
    m = Model()
    identifier(m)
    m.cache = 1  # runtime state is not part of the config
    assert m.cache == 1


def test_unsupported_type_fails_at_class_definition():
    with pytest.raises(ConfigError, match=r"Bad.x: unsupported type bytes; supported: "):

        class Bad(Config):
            x: Param[bytes]

    with pytest.raises(ConfigError, match=r"dict keys must be str"):

        class Bad2(Config):
            x: Param[dict[int, int]]


def test_wrong_default_type_fails_at_class_definition():
    with pytest.raises(ConfigError, match="Bad.x: default 'a': expected int, got str"):

        class Bad(Config):
            x: Param[int] = "a"


def test_invalid_explicit_id():
    with pytest.raises(ConfigError, match="invalid id 'a b'"):

        class Bad(Config, id="a b"):
            pass


def test_pathgenerator_rejects_escaping_paths():
    with pytest.raises(ConfigError, match="pathgenerator"):
        pathgenerator("../x")
    with pytest.raises(ConfigError, match="pathgenerator"):
        pathgenerator("/abs")


def test_field_rejects_both_defaults():
    with pytest.raises(ConfigError, match="either default= or default_factory="):
        field(default=1, default_factory=int)


def test_tags_are_collected_through_the_tree():
    learn = ModelLearn(model=Model(hidden=tag(64)), epochs=tag(10))
    assert learn.epochs == 10
    assert learn.__tags__ == {"epochs": 10, "hidden": 64}
    assert learn.model.__tags__ == {"hidden": 64}


def test_tags_inside_lists_and_outer_wins():
    class Outer(Config):
        hidden: Param[int] = 0
        models: Param[list[Model]]

    o = Outer(hidden=tag(1), models=[Model(hidden=tag(2))])
    assert o.__tags__ == {"hidden": 1}
    assert Outer(models=[Model(hidden=tag(2))]).__tags__ == {"hidden": 2}


def test_tag_by_assignment():
    m = Model()
    m.hidden = tag(5)
    assert m.__tags__ == {"hidden": 5}


class Node(Config):
    child: Param[Optional[Node]]


def test_forward_reference_resolved_on_first_use():
    leaf = Node()
    assert Node(child=leaf).child is leaf


def test_unresolvable_annotation_is_a_clear_error():
    class Orphan(Config):
        x: Param[Missing]  # noqa: F821

    with pytest.raises(ConfigError, match="Orphan: unresolved annotation: name 'Missing'"):
        Orphan()


def test_repr_shows_values():
    assert repr(ModelLearn(model=Model())) == "ModelLearn(epochs=100, model=Model(hidden=128))"


def test_generated_path_before_submission_is_a_placeholder():
    learn = ModelLearn(model=Model())
    assert learn.parameters.parts[-1] == "parameters.pth"
    assert learn.parameters.parts[0] == "__unsubmitted__"
    learn.__taskdir__ = Path("/ws/jobs/x/abc")
    assert learn.parameters == Path("/ws/jobs/x/abc/parameters.pth")


def test_taskdir_before_submission_is_a_clear_error():
    with pytest.raises(AttributeError, match="has no job directory: submit it first"):
        _ = ModelLearn(model=Model()).__taskdir__


def test_task_default_execute_is_an_error():
    class NoExecute(Task):
        pass

    with pytest.raises(ConfigError, match="NoExecute does not define execute"):
        NoExecute().execute()


def test_dataset_of_seed_builds():
    d = Dataset(topics=Topics(path="/t"), documents=Documents(path="/d"))
    assert d.topics.path == Path("/t")
