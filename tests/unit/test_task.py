"""``dependencies(config)``: the tasks a config needs, with the seed's ``RandomFold``."""

from __future__ import annotations

from pathlib import Path

from corral import Config, Param, Task, dependencies
from corral.core.task import Dep
from tests.seed_tasks import Dataset, Documents, Model, ModelLearn, RandomFold, Topics


class UsesDataset(Task):
    dataset: Param[Dataset]


class UsesDocuments(Task):
    documents: Param[Documents]


class UsesLearn(Task):
    learn: Param[ModelLearn]


class UsesPath(Task):
    path: Param[Path]


class Many(Task):
    first: Param[Config]
    second: Param[list[Config]]


class Chain(Task):
    before: Param[UsesLearn]


def fold_and_outputs() -> tuple[RandomFold, Dataset]:
    fold = RandomFold(dataset=Dataset(topics=Topics(path="/t"), documents=Documents(path="/d")))
    fold.__taskdir__ = Path("/ws/jobs/fold")
    return fold, fold.task_outputs(Dep(fold))


def test_random_fold_outputs_make_it_a_dependency_through_their_topics():
    fold, outputs = fold_and_outputs()
    assert dependencies(UsesDataset(dataset=outputs)) == [fold]
    # the topics alone (marked with dep), inside a dataset built around them
    rebuilt = Dataset(topics=outputs.topics, documents=Documents(path="/other"))
    assert dependencies(UsesDataset(dataset=rebuilt)) == [fold]
    assert dependencies(rebuilt) == [fold]


def test_a_config_built_only_from_the_documents_has_no_dependency():
    fold, outputs = fold_and_outputs()
    assert outputs.documents is fold.dataset.documents  # not marked: RandomFold keeps it
    assert dependencies(UsesDocuments(documents=outputs.documents)) == []
    plain = Dataset(topics=Topics(path="/x"), documents=outputs.documents)
    assert dependencies(UsesDataset(dataset=plain)) == []
    assert dependencies(fold) == []  # never itself; its own dataset is plain


def test_a_task_used_as_a_param_is_a_dependency():
    learn = ModelLearn(model=Model())
    assert dependencies(UsesLearn(learn=learn)) == [learn]
    assert dependencies(learn) == []


def test_a_generated_path_is_a_dependency_and_a_derived_path_is_not():
    fold, _ = fold_and_outputs()
    assert dependencies(UsesPath(path=fold.topics)) == [fold]
    assert dependencies(UsesDataset(dataset=Dataset(
        topics=Topics(path=fold.topics), documents=Documents(path="/d")))) == [fold]
    assert dependencies(UsesPath(path=fold.topics.parent / "other.tsv")) == []


def test_each_dependency_once_in_order_of_first_appearance_and_not_transitively():
    fold, outputs = fold_and_outputs()
    learn = ModelLearn(model=Model())
    many = Many(first=learn, second=[outputs, outputs.topics, learn])
    assert dependencies(many) == [learn, fold]
    uses = UsesLearn(learn=learn)
    assert dependencies(Chain(before=uses)) == [uses]  # learn is uses' own business
