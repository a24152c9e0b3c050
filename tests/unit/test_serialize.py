"""params.json: what the client writes is what the job rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

from corral import identifier, tag
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


from corral import Param, Task  # noqa: E402


class DatasetUser(Task):
    dataset: Param[Dataset]
