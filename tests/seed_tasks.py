"""The seed page's declarations, copied with only the import line changed.

The seed uses names it never defines (``Model``, ``Dataset``, ``Topics``, ``Documents``,
``Adhoc``); they are defined here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from corral import Config, Param, Task, pathgenerator


class Model(Config):
    hidden: Param[int] = 128


class Documents(Config):
    path: Param[Path]


class Topics(Config):
    path: Param[Path]


class Dataset(Config):
    topics: Param[Topics]
    documents: Param[Documents]


Adhoc = Dataset


# --- from the seed page: "Defining a task" -------------------------------------------------
class ModelLearn(Task):
    epochs: Param[int] = 100
    model: Param[Model]
    parameters: Annotated[Path, pathgenerator("parameters.pth")]

    def execute(self):
        """Called when this task is run"""
        pass


# --- from the seed page: "Task outputs" ----------------------------------------------------
class RandomFold(Task):
    dataset: Param[Dataset]
    """The source dataset"""

    topics: Annotated[Path, pathgenerator("topics.tsv")]
    """Generated topics"""

    def task_outputs(self, dep) -> Adhoc:
        return dep(Dataset(
            topics=dep(Topics(path=self.topics)),
            documents=self.dataset.documents,
        ))
