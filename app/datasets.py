"""Datasets for jobs: built-ins by name, users' uploads by id (``ds_…``) from the database.

The API stores uploads here after ``models.data.upload.parse`` validated them; the
runner loads a job's data through ``load_job_data``, so a worker on another host needs
only the database URL. A job's data is any data kind (``models.data.DataKind``); an
upload is a tensor table (a CSV table, NPZ arrays) or a graph (an edge list).
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy.orm import Session

from app.db.models import Dataset, new_id
from app.db.session import session_scope
from app.refusals import Refused
from models import data as zoo_data
from models.data import GRAPH_DATASETS, Graph, Task
from models.data.graph_upload import ParsedGraph, load_graph_upload
from models.data.graphs import GRAPH
from models.data.upload import UPLOAD_ID, Parsed, load_upload, upload_info
from models.registry import get_family

_UPLOAD_RE = re.compile(UPLOAD_ID)


def is_upload_id(name: str) -> bool:
    return bool(_UPLOAD_RE.match(name))


def store(
    session: Session,
    owner: str,
    name: str,
    blob: bytes,
    parsed: Parsed,
    data: bytes | None = None,
) -> Dataset:
    """Add the upload's row; ``data`` is ``parsed.canonical()`` when the caller has it."""
    digest = hashlib.sha256(blob).hexdigest()
    row = Dataset(
        id=new_id("ds"),
        owner=owner,
        name=name,
        kind=parsed.kind,
        task=parsed.task,
        n_rows=len(parsed.x),
        input_shape=list(parsed.x.shape[1:]),
        target_dim=1 if parsed.y.ndim == 1 else int(parsed.y.shape[1]),
        n_classes=parsed.n_classes,
        classes=parsed.classes,
        target=parsed.target,
        features=parsed.features,
        # the same file gets the same split, whoever uploads it and however often
        split_seed=int(digest[:15], 16),
        sha256=digest,
        size_bytes=len(blob),
        data=parsed.canonical() if data is None else data,
    )
    session.add(row)
    session.flush()
    return row


def store_graph(
    session: Session, owner: str, name: str, blob: bytes, parsed: ParsedGraph, data: bytes
) -> Dataset:
    """Add an edge list's row (``kind`` edges); ``data`` is ``parsed.canonical()``. Its
    task is ``classification`` when its nodes are labelled, else ``embedding``."""
    digest = hashlib.sha256(blob).hexdigest()
    row = Dataset(
        id=new_id("ds"),
        owner=owner,
        name=name,
        kind="edges",
        task="embedding" if parsed.labels is None else "classification",
        n_rows=parsed.n_nodes,
        input_shape=[parsed.n_nodes],
        target_dim=1,
        n_classes=None if parsed.classes is None else len(parsed.classes),
        classes=parsed.classes,
        target=None,
        features=["source", "target", *(["weight"] if parsed.weights is not None else [])],
        split_seed=int(digest[:15], 16),
        sha256=digest,
        size_bytes=len(blob),
        data=data,
    )
    session.add(row)
    session.flush()
    return row


def owned_dataset(session: Session, owner: str, dataset_id: str) -> Dataset | None:
    row = session.get(Dataset, dataset_id) if is_upload_id(dataset_id) else None
    return row if row is not None and row.owner == owner else None


def info_of(row: Dataset) -> zoo_data.DataInfo:
    if row.kind == "edges":  # its DataInfo counts edges: read the stored graph
        return load_graph_upload(row.data, name=row.id).info
    task: Task = "classification" if row.task == "classification" else "regression"
    return upload_info(
        row.id, task, row.n_rows, tuple(row.input_shape), row.target_dim, row.n_classes
    )


class DatasetUnavailable(Refused, LookupError):
    """A job names an upload that does not exist or is another owner's (not revealed)."""

    def __init__(self, dataset: str) -> None:
        super().__init__(
            f"dataset: no upload {dataset!r}; see GET /v1/datasets",
            field="dataset",
            message="no such upload",
            kind="not_found",
        )
        self.dataset = dataset


def job_data_info(session: Session, owner: str, dataset: str) -> zoo_data.DataInfo:
    """The DataInfo a job on ``dataset`` builds its model from; an upload must be the
    caller's (:class:`DatasetUnavailable` otherwise, a 422 naming ``dataset`` in the API:
    another owner's upload is not revealed)."""
    if not is_upload_id(dataset):
        return zoo_data.load_data(dataset).info
    row = owned_dataset(session, owner, dataset)
    if row is None:
        raise DatasetUnavailable(dataset)
    return info_of(row)


class WrongKind(Refused, ValueError):
    """A job names an upload of another kind than its family trains on (a table for a
    graph family, an edge list for a predictive one)."""

    def __init__(self, dataset: str, model: str, graph: bool) -> None:
        want = "a graph (an edge list)" if graph else "a table (CSV or NPZ)"
        super().__init__(
            f"dataset: {dataset!r} is not {want}, which {model!r} trains on",
            field="dataset",
            message=f"{model!r} trains on {want}",
            kind="wrong_kind",
        )


def check_upload_kind(model: str, dataset: str, info: zoo_data.DataInfo) -> None:
    """``WrongKind`` (a 422 naming ``dataset``) when an upload's kind is not what the
    family trains on: graph families take edge lists, the others tables."""
    if not is_upload_id(dataset):
        return
    graph = bool(get_family(model).datasets & GRAPH_DATASETS)
    if graph != (info.kind == GRAPH):
        raise WrongKind(dataset, model, graph)


def load_job_data(name: str) -> zoo_data.DataKind:
    """A job's data, of any kind: a built-in (cached per process) or an upload read from
    the database."""
    return zoo_data.load_data(name) if not is_upload_id(name) else _load_any_upload(name)


def load_dataset(name: str) -> zoo_data.TensorTable:
    """A job's tensor table (a test split to evaluate on): a built-in or an upload."""
    return zoo_data.load(name) if not is_upload_id(name) else _load_upload(name)


def _load_upload(name: str) -> zoo_data.TensorTable:
    data = _load_any_upload(name)
    if not isinstance(data, zoo_data.TensorTable):
        raise LookupError(f"dataset {name} is a graph, not a table")
    return data


def _load_any_upload(name: str) -> zoo_data.TensorTable | Graph:
    with session_scope() as s:
        row = s.get(Dataset, name)
        if row is None:
            raise LookupError(f"dataset {name} was deleted")
        if row.kind == "edges":
            return load_graph_upload(row.data, name=row.id)
        return load_upload(
            row.data,
            name=row.id,
            task=row.task,  # type: ignore[arg-type]
            n_classes=row.n_classes,
            seed=row.split_seed,
        )
