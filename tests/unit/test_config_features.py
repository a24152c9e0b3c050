"""Config features beyond the seed page: sets, tags on built configs and their propagation,
setmeta, copyconfig, field overrides, Choices, partial identifiers, cycles, init tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest

from corral import (
    Choices,
    Config,
    ConfigError,
    LightweightTask,
    Meta,
    Param,
    Task,
    copyconfig,
    field,
    identifier,
    partial,
    partial_identifier,
    pathgenerator,
    setmeta,
    stop_tags,
    tag,
)
from corral.core.serialize import dump_params, load_params
from corral.core.task import attach_init_tasks, dependencies


class Item(Config, id="features.Item"):
    n: Param[int] = 0
    file: Annotated[Path, pathgenerator("item.txt")]


class Bag(Config, id="features.Bag"):
    numbers: Param[set[int]] = set()
    names: Param[frozenset[str]] = frozenset()
    items: Param[set[Item]] = set()


def roundtrip(task: Config, tmp_path: Path = Path("/ws")) -> Any:
    job_dir = tmp_path / "jobs" / "x" / identifier(task)
    data = dump_params(task, workspace=tmp_path, job_dir=job_dir, depends_on=[])
    return load_params(json.loads(json.dumps(data))).root


# --- set[T] and frozenset[T] ------------------------------------------------------------------


def test_set_params_identity_does_not_depend_on_order_or_repeats():
    a = Bag(numbers={3, 1, 2}, names={"x", "y"})
    b = Bag(numbers={1, 2, *[3, 3]}, names=frozenset(["y", "x"]))
    assert identifier(a) == identifier(b)
    assert identifier(Bag(numbers={1, 2})) != identifier(Bag(numbers={1, 2, 3}))
    assert type(a.numbers) is frozenset and a.numbers == {1, 2, 3}


def test_set_params_are_checked_item_by_item():
    with pytest.raises(ConfigError, match=r"Bag.names: expected frozenset\[str\], got set "
                       r"\(at names item: int 1\)"):
        Bag(names={1})
    with pytest.raises(ConfigError, match=r"Bag.numbers: expected set\[int\], got list"):
        Bag(numbers=[1, 2])


class Holder(Task, id="features.SetHolder"):
    bag: Param[Bag]


def test_a_set_of_configs_survives_params_json_with_the_same_identity():
    task = Holder(bag=Bag(numbers={5, 4}, items={Item(n=2), Item(n=1)}))
    loaded = roundtrip(task)
    assert loaded.bag.numbers == frozenset({4, 5})
    assert sorted(i.n for i in loaded.bag.items) == [1, 2]
    loaded.__dict__.pop("_corral_digest")
    assert identifier(loaded) == identifier(task)


# --- tags ---------------------------------------------------------------------------------------


class Encoder(Config, id="features.Encoder"):
    size: Param[int] = 8


class Model(Config, id="features.Model"):
    encoder: Param[Encoder]
    decoder: Param[Optional[Encoder]] = None
    weights: Annotated[Path, pathgenerator("weights.pt")]


class Learn(Task, id="features.Learn"):
    model: Param[Model]
    lr: Param[float] = 0.1
    epochs: Param[int] = field(default=10, group="schedule")
    warmup: Param[int] = field(default=0, group="schedule")
    checkpoints: Annotated[Path, pathgenerator("ckpt", partial=partial(exclude=["schedule"]))]


class Evaluate(Task, id="features.Evaluate"):
    learned: Param[Learn]
    split: Param[Choices["dev", "test"]] = "dev"  # noqa: F821, UP037 (ruff: Choices is Literal)


def test_tag_on_a_built_config_propagates_up_and_never_enters_the_identity():
    enc = Encoder(size=16).tag("enc", "big")
    model = Model(encoder=enc)
    learn = Learn(model=model, lr=tag(0.5))
    before = identifier(Learn(model=Model(encoder=Encoder(size=16)), lr=0.5))
    assert learn.__tags__ == {"lr": 0.5, "enc": "big"}
    assert model.__tags__ == {"enc": "big"}
    assert identifier(learn) == before


def test_the_tag_nearest_the_config_wins_and_sub_tasks_propagate_theirs():
    deep = Encoder().tag("where", "deep")
    model = Model(encoder=deep, decoder=Encoder().tag("side", 1)).tag("where", "model")
    learn = Learn(model=model).tag("lr", 0.2)
    evaluate = Evaluate(learned=learn)
    assert model.__tags__ == {"where": "model", "side": 1}
    assert evaluate.__tags__ == {"lr": 0.2, "where": "model", "side": 1}


def test_stop_tags_stops_propagation_below_a_config():
    pretrained = stop_tags(Model(encoder=Encoder().tag("pretrain_size", 8)))
    learn = Learn(model=pretrained).tag("lr", 0.3)
    assert learn.__tags__ == {"lr": 0.3}
    assert pretrained.__tags__ == {"pretrain_size": 8}
    loaded = roundtrip(learn)  # the job sees the same tags
    assert loaded.__tags__ == {"lr": 0.3}


def test_tag_refuses_bad_names_values_and_sealed_configs():
    with pytest.raises(ConfigError, match=r"Encoder.tag\('a b', ...\): a tag name"):
        Encoder().tag("a b", 1)
    with pytest.raises(ConfigError, match=r"expected str, int, float, bool or None, got list"):
        Encoder().tag("x", [1])
    sealed = Encoder()
    identifier(sealed)
    with pytest.raises(ConfigError, match=r"the config is sealed .*: tag it before"):
        sealed.tag("late", 1)


def test_a_field_cannot_shadow_a_method_of_every_config():
    with pytest.raises(ConfigError, match=r"Bad.tag: 'tag' is the name of a method every config"):

        class Bad(Config):
            tag: Param[int] = 0


# --- setmeta ------------------------------------------------------------------------------------


class Watch(Config, id="features.Watch"):
    every: Param[int] = 1


class Logged(Task, id="features.Logged"):
    learn: Param[Learn]
    watch: Param[Optional[Watch]] = None


def test_setmeta_leaves_a_config_out_of_its_holders_identity_but_in_params_json():
    plain = identifier(Learn(model=Model(encoder=Encoder()), lr=0.2))
    a = Logged(learn=Learn(model=Model(encoder=Encoder())), watch=setmeta(Watch(every=5)))
    b = Logged(learn=Learn(model=Model(encoder=Encoder())), watch=setmeta(Watch(every=9)))
    c = Logged(learn=Learn(model=Model(encoder=Encoder())), watch=Watch(every=5))
    assert identifier(a) == identifier(b) != identifier(c)
    assert plain != identifier(a)
    loaded = roundtrip(a)
    assert loaded.watch.every == 5 and loaded.watch.__dict__["_corral_meta"]


class Many(Config, id="features.Many"):
    encoders: Param[list[Encoder]]
    named: Param[dict[str, Encoder]] = {}


def test_setmeta_inside_a_container_leaves_the_item_out():
    a = Many(encoders=[Encoder(size=1), setmeta(Encoder(size=2))], named={"x": setmeta(Encoder())})
    b = Many(encoders=[Encoder(size=1)])
    assert identifier(a) == identifier(b) != identifier(Many(encoders=[Encoder(size=2)]))
    rebuilt = roundtrip_tree(a)
    assert [e.size for e in rebuilt.encoders] == [1, 2]  # kept in params.json all the same
    assert rebuilt.encoders[1].__dict__["_corral_meta"]


def roundtrip_tree(config: Config) -> Any:
    from corral.core.serialize import params_tree

    objects, root, _ = params_tree(config)
    data = {"corral": 1, "root": root, "objects": objects, "sys_path": [], "workspace": "/ws",
            "job_dir": "/ws/jobs/x/y", "depends_on": []}
    return load_params(json.loads(json.dumps(data))).root


# --- copyconfig --------------------------------------------------------------------------------


def test_copyconfig_changes_params_copies_nested_configs_and_shares_tasks():
    learn = Learn(model=Model(encoder=Encoder(size=4)).tag("m", 1), lr=0.1)
    identifier(learn)  # sealed: the copy is not
    other = copyconfig(learn, lr=0.5)
    assert other.lr == 0.5 and learn.lr == 0.1
    assert other.model is not learn.model and other.model.encoder is not learn.model.encoder
    assert other.model.encoder.size == 4 and other.__tags__ == {"m": 1}
    other.epochs = 20  # unsealed
    evaluate = Evaluate(learned=learn)
    assert copyconfig(evaluate, split="test").learned is learn
    assert identifier(copyconfig(learn)) == identifier(learn)


def test_copyconfig_validates_changes():
    with pytest.raises(ConfigError, match=r"Learn: unknown param 'lrr' \(did you mean 'lr'\?\)"):
        copyconfig(Learn(model=Model(encoder=Encoder())), lrr=1.0)
    with pytest.raises(ConfigError, match=r"Learn.lr: expected float, got str"):
        copyconfig(Learn(model=Model(encoder=Encoder())), lr="fast")


# --- field overrides ---------------------------------------------------------------------------


class Base(Config, id="features.Base"):
    encoder: Param[Encoder]
    mode: Param[str] = "a"
    rate: Param[float] = 0.5


class BigEncoder(Encoder, id="features.BigEncoder"):
    layers: Param[int] = 2


def test_a_new_default_needs_no_override_a_narrower_type_needs_one():
    class NewDefault(Base):
        rate: Param[float] = 0.1

    assert NewDefault(encoder=Encoder()).rate == 0.1

    class Narrow(Base):
        encoder: Param[BigEncoder] = field(overrides=True)
        mode: Param[Literal["a", "b"]] = field(default="b", overrides=True)
        rate: Param[int] = field(default=1, overrides=True)

    with pytest.raises(ConfigError, match=r"Narrow.encoder: expected BigEncoder, got Encoder"):
        Narrow(encoder=Encoder())
    assert Narrow(encoder=BigEncoder()).mode == "b"


def test_overrides_are_checked_for_type_compatibility_and_kind():
    with pytest.raises(ConfigError, match=r"Silent.rate: redeclares Base.rate as int \(was "
                       r"float\); write `= field\(overrides=True\)`"):

        class Silent(Base):
            rate: Param[int] = 1

    with pytest.raises(ConfigError, match=r"Wider.mode: overrides Base.mode with int \| str, "
                       "which is not narrower than str"):

        class Wider(Base):
            mode: Param[int | str] = field(default="a", overrides=True)

    with pytest.raises(ConfigError, match=r"Kind.rate: Base.rate is a param, a subclass cannot "
                       "make it a meta"):

        class Kind(Base):
            rate: Meta[float] = 0.5

    with pytest.raises(ConfigError, match=r"Nothing.other: field\(overrides=True\), but no base"):

        class Nothing(Base):
            other: Param[int] = field(default=1, overrides=True)


# --- Choices -----------------------------------------------------------------------------------


def test_choices_are_checked_at_construction_with_the_closest_valid_value():
    learn = Learn(model=Model(encoder=Encoder()))
    assert Evaluate(learned=learn, split="test").split == "test"
    with pytest.raises(ConfigError, match=r"Evaluate.split: expected Literal\['dev', 'test'\], "
                       r"got str 'tset' \(did you mean 'test'\?\)"):
        Evaluate(learned=learn, split="tset")


# --- partial identifiers -----------------------------------------------------------------------


def test_partial_identifier_ignores_the_excluded_params_and_groups():
    def learn(**kw: Any) -> Learn:
        return Learn(model=Model(encoder=Encoder()), **kw)

    a, b, c = learn(epochs=10), learn(epochs=50, warmup=3), learn(epochs=10, lr=0.9)
    assert identifier(a) != identifier(b)
    assert partial_identifier(a, ["schedule"]) == partial_identifier(b, ["schedule"])
    assert partial_identifier(a, ["schedule"]) != partial_identifier(c, ["schedule"])
    assert partial_identifier(a, ["epochs", "warmup"]) == partial_identifier(a, ["schedule"])
    assert partial_identifier(a, ["epochs"]) != partial_identifier(b, ["epochs"])  # warmup


def test_a_partial_path_is_shared_by_runs_that_differ_only_in_excluded_params():
    def learn(**kw: Any) -> Learn:
        task = Learn(model=Model(encoder=Encoder()), **kw)
        task.__dict__["__taskdir__"] = Path("/ws/jobs/features.Learn") / identifier(task)
        return task

    a, b, c = learn(epochs=10), learn(epochs=50), learn(lr=0.9)
    assert a.checkpoints == b.checkpoints != c.checkpoints
    pid = partial_identifier(a, ["schedule"])
    assert a.checkpoints == Path(f"/ws/partials/features.Learn/{pid}/ckpt")
    loaded = roundtrip(a, Path("/ws"))
    assert loaded.checkpoints == a.checkpoints


def test_partial_names_are_checked_at_class_definition():
    with pytest.raises(ConfigError, match=r"Bad.out: partial\(exclude=...\) names 'epoch', which "
                       r"is no param or group \(did you mean 'epochs'\?\); valid: epochs"):

        class Bad(Task):
            epochs: Param[int] = 1
            out: Annotated[Path, pathgenerator("o", partial=partial(exclude=["epoch"]))]

    with pytest.raises(ConfigError, match=r"partial\(exclude=\[\]\): name at least one"):
        partial(exclude=[])


# --- cycles --------------------------------------------------------------------------------------


def test_a_cycle_is_an_error_that_names_it():
    class Node(Config, id="features.Node"):
        next: Param[Optional[Node]] = None
        others: Param[list[Node]] = []

    a, b, c = Node(), Node(), Node()
    a.next, b.others, c.next = b, [c], a
    with pytest.raises(ConfigError, match=r"the config tree contains a cycle: Node.next → "
                       r"Node.others → Node.next → Node \(an identity"):
        identifier(a)
    a.next = None  # a failed attempt seals nothing: the cycle can be broken
    assert len(identifier(a)) == 64


# --- init tasks ---------------------------------------------------------------------------------


class LoadWeights(LightweightTask, id="features.LoadWeights"):
    learned: Param[Learn]
    log: Annotated[Path, pathgenerator("loaded.txt")]


def test_init_tasks_enter_the_identity_in_order_and_their_tasks_are_dependencies():
    learn = Learn(model=Model(encoder=Encoder()))
    first = Learn(model=Model(encoder=Encoder()), lr=0.3)

    def fine_tune(*init: LightweightTask) -> Evaluate:
        task = Evaluate(learned=learn)
        attach_init_tasks(task, init)
        return task

    plain, one = fine_tune(), fine_tune(LoadWeights(learned=first))
    assert identifier(plain) != identifier(one)
    assert identifier(one) == identifier(fine_tune(LoadWeights(learned=first)))
    assert dependencies(one) == [learn, first]
    loaded = roundtrip(one)
    assert [type(i).__name__ for i in loaded.__dict__["_corral_init"]] == ["LoadWeights"]


def test_init_tasks_are_refused_once_the_identifier_was_taken_without_them():
    task = Evaluate(learned=Learn(model=Model(encoder=Encoder())))
    identifier(task)
    with pytest.raises(ConfigError, match=r"its identifier was taken without these init tasks"):
        attach_init_tasks(task, [LoadWeights(learned=Learn(model=Model(encoder=Encoder())))])
    with pytest.raises(ConfigError, match=r"expected LightweightTask instances, got Encoder"):
        attach_init_tasks(Evaluate(learned=task.learned), [Encoder()])
