"""params.json: what the client writes is what the job rebuilds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import pytest

from corral import Config, Param, Task, identifier, pathgenerator, tag
from corral.core.identity import type_id
from corral.core.serialize import dump_params, load_params
from corral.core.task import Dep
from tests.seed_tasks import Dataset, Documents, RandomFold, Topics
from tests.unit.identity_vectors import Inner, Maybe, Outer, Shade, Value


def roundtrip(task, workspace=Path("/ws")):
    job_dir = workspace / "jobs" / type_id(task) / identifier(task)
    data = json.loads(json.dumps(dump_params(task, workspace=workspace, job_dir=job_dir,
                                             depends_on=[])))
    return load_params(data), job_dir


def test_values_of_every_kind_round_trip():
    original = Value(v={"t": (1, 2.5), "l": [None, True], "p": Path("/x y"), "f": float("inf"),
                        "s": "$(x)", "c": Inner(n=3)})
    loaded, _ = roundtrip(original)
    v = loaded.root.v
    assert v["t"] == (1, 2.5) and isinstance(v["t"], tuple)
    assert v["p"] == Path("/x y") and v["f"] == float("inf") and v["s"] == "$(x)"
    assert isinstance(v["c"], Inner) and v["c"].n == 3
    assert identifier(loaded.root) == identifier(original)


def test_enums_nested_configs_and_tags():
    original = Outer(inner=Inner(n=tag(1)), others=[Inner(n=2)], named={"k": Inner(n=3)})
    loaded, _ = roundtrip(original)
    assert loaded.root.named["k"].n == 3
    assert loaded.root.__tags__ == {"n": 1}
    m, _ = roundtrip(Maybe(x=1, shade=Shade.LIGHT))
    assert m.root.shade is Shade.LIGHT


def test_shared_config_stays_shared():
    shared = Inner(n=1)
    loaded, _ = roundtrip(Outer(inner=shared, others=[shared]))
    assert loaded.root.inner is loaded.root.others[0]


def test_generated_paths_and_producers_are_rebuilt_in_the_job_workspace():
    fold = RandomFold(dataset=Dataset(topics=Topics(path="/t"), documents=Documents(path="/d")))
    fold.__taskdir__ = Path("/client/ws/jobs") / type_id(fold) / identifier(fold)
    outputs = fold.task_outputs(Dep(fold))
    loaded, job_dir = roundtrip(DatasetUser(dataset=outputs), workspace=Path("/remote/ws"))
    topics_path = loaded.root.dataset.topics.path
    assert topics_path == Path("/remote/ws/jobs") / type_id(fold) / identifier(fold) / "topics.tsv"
    assert identifier(loaded.root.dataset) == identifier(outputs)
    assert loaded.root.__taskdir__ == job_dir
    assert loaded.root.dataset.__maintaskdir__ == job_dir


class DatasetUser(Task):
    dataset: Param[Dataset]


def test_rebuilt_values_are_read_only_and_keep_their_types():
    from corral import ConfigError

    original = Value(v={"l": [1, [2]], "t": ([3],), "d": {"k": [4]}})
    loaded, _ = roundtrip(original)
    v = loaded.root.v
    assert v == {"l": [1, [2]], "t": ([3],), "d": {"k": [4]}}
    assert type(v["t"]) is tuple
    for mutate in (lambda: v["l"][1].append(3), lambda: v["d"].pop("k"),
                   lambda: v["t"][0].clear(), lambda: v.update(x=1)):
        with pytest.raises(ConfigError, match=r"Value\.v: cannot modify, the config is sealed"):
            mutate()
    loaded.root.__dict__.pop("_corral_digest")
    assert identifier(loaded.root) == identifier(original)
    assert json.loads(json.dumps(v)) == {"l": [1, [2]], "t": [[3]], "d": {"k": [4]}}


class Part(Config):
    """A sub-config with a generated path."""

    file: Annotated[Path, pathgenerator("part/deep/file.txt")]
    inner: Param[Optional[Part]] = None


class Producer(Task):
    part: Param[Part]
    out: Annotated[Path, pathgenerator("out.txt")]


class Main(Task):
    part: Param[Part]
    parts: Param[list[Part]] = []
    producer: Param[Optional[Producer]] = None


def test_maintaskdir_on_every_config_and_generated_paths_in_their_tasks_directory():
    ws = Path("/ws")
    producer = Producer(part=Part(inner=Part()))
    producer_dir = ws / "jobs" / type_id(producer) / identifier(producer)
    main = Main(part=Part(inner=Part()), parts=[Part()], producer=producer)
    loaded, job_dir = roundtrip(main, workspace=ws)
    root = loaded.root
    assert {c.__maintaskdir__ for c in loaded.configs} == {job_dir}
    assert len(loaded.configs) == 7
    # each nested config at its own place: out/<its position in the tree>/<relpath>
    assert root.part.file == job_dir / "out/part/part/deep/file.txt"
    assert root.part.inner.file == job_dir / "out/part/inner/part/deep/file.txt"
    assert root.parts[0].file == job_dir / "out/parts/0/part/deep/file.txt"
    assert root.producer.out == producer_dir / "out.txt"
    # where the producer's own job put its sub-config's file, not in this job
    assert root.producer.part.file == producer_dir / "out/part/part/deep/file.txt"
    assert root.producer.part.inner.file == producer_dir / "out/part/inner/part/deep/file.txt"
    own = {id(c) for c in loaded.own}
    assert own == {id(root), id(root.part), id(root.part.inner), id(root.parts[0])}


def test_a_config_in_both_trees_belongs_to_the_main_task():
    shared = Part()
    producer = Producer(part=shared)
    loaded, job_dir = roundtrip(Main(part=shared, producer=producer))
    assert loaded.root.producer.part is loaded.root.part
    assert loaded.root.part.file == job_dir / "out/part/part/deep/file.txt"
