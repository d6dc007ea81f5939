"""Datasets: the built-ins and the caller's uploads (CSV tables, NPZ arrays, graphs as
edge lists).

An upload is validated in full (``models.data.upload.parse``, or
``models.data.graph_upload.parse_graph`` with ``kind=edges``) before it is stored, and
stored in the database in a canonical ``.npz``; jobs name it by id.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.api.deps import CurrentPrincipal, SessionDep
from app.config import get_settings
from app.datasets import owned_dataset, store, store_graph
from app.db.models import Dataset, Job
from app.problems import Problem, field_problem, problem_responses, refusals_as_problems
from app.schemas import DatasetOut
from app.storage import check_quota
from models import data as zoo_data
from models.data.graph_upload import parse_graph
from models.data.upload import UploadError, parse, split_sizes

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
DatasetId = Annotated[str, Path(max_length=64)]


def upload_out(row: Dataset) -> DatasetOut:
    if row.kind == "edges":
        labelled = row.task == "classification"
        return DatasetOut(
            id=row.id,
            name=row.name,
            kind="edges",
            description=f"upload (edge list), {'labelled' if labelled else 'unlabelled'} nodes",
            task="node_classification" if labelled else "embedding",
            shape=[row.n_rows],
            n_rows=row.n_rows,
            features=row.features,
            classes=row.classes,
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            created_at=row.created_at,
        )
    n_train, n_val, n_test = split_sizes(row.n_rows)
    return DatasetOut(
        id=row.id,
        name=row.name,
        kind=row.kind,
        description=f"upload ({'CSV' if row.kind == 'table' else 'NPZ'}), {row.task}",
        task=row.task,
        shape=[row.n_rows, *row.input_shape],
        n_rows=row.n_rows,
        n_features=len(row.features),
        target=row.target,
        features=row.features,
        classes=row.classes,
        splits={"train": n_train, "val": n_val, "test": n_test},
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
    )


def _uploads(session: Session, owner: str) -> list[Dataset]:
    q = select(Dataset).where(Dataset.owner == owner)
    return list(session.scalars(q.order_by(Dataset.created_at.desc(), Dataset.id.desc())).all())


@router.get("", response_model=list[DatasetOut])
def list_datasets(principal: CurrentPrincipal, session: SessionDep) -> list[DatasetOut]:
    """The built-ins, then the caller's uploads (newest first)."""
    builtins = [
        DatasetOut(id=name, name=name, kind="builtin", description=desc)
        for name, desc in zoo_data.catalog().items()
    ]
    return builtins + [upload_out(row) for row in _uploads(session, principal.owner)]


# malformed multipart (no boundary, a broken part) is 400 from the form parser
@router.post("", status_code=201, response_model=DatasetOut, responses=problem_responses(400))
def upload_dataset(
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    file: Annotated[
        UploadFile,
        File(
            description="a .csv table with a header row, or an .npz; with kind=edges a CSV "
            "or TSV edge list with the header source,target[,weight]"
        ),
    ],
    name: Annotated[str, Form(min_length=1, max_length=200, description="a label for you")],
    target: Annotated[
        str | None, Form(min_length=1, max_length=200, description="CSV: the column to predict")
    ] = None,
    task: Annotated[
        Literal["regression", "classification"] | None,
        Form(
            description="default: classification for integer or text targets with few "
            "distinct values, else regression"
        ),
    ] = None,
    kind: Annotated[
        Literal["table", "edges"],
        Form(description="table: a CSV table or an .npz; edges: a graph's edge list"),
    ] = "table",
    labels: Annotated[
        UploadFile | None,
        File(description="kind=edges: node labels, a CSV or TSV with the header node,label"),
    ] = None,
    directed: Annotated[
        bool, Form(description="kind=edges: edges go from source to target only")
    ] = False,
) -> DatasetOut:
    """Upload a dataset; it is validated in full before it is stored (413 past
    ``DEEPZOO_MAX_UPLOAD_MB``, 422 naming the field at fault, 422 naming ``storage`` when
    the stored form would take the owner over ``DEEPZOO_STORAGE_QUOTA_MB``)."""
    settings = get_settings()
    label = name.strip()
    if not label or not label.isprintable():
        raise field_problem("name", "name must be printable text, not blank", 422)
    limit = settings.max_upload_mb * 1024 * 1024
    blob = file.file.read(limit + 1)  # spooled to disk by the multipart parser, not memory
    if len(blob) > limit:
        raise field_problem("file", f"the file is over {settings.max_upload_mb} MiB", 413)
    count = session.scalar(select(func.count()).where(Dataset.owner == principal.owner)) or 0
    if count >= settings.max_datasets:
        raise Problem(409, f"at most {settings.max_datasets} uploads per owner; delete one")
    with refusals_as_problems():
        check_quota(session, principal.owner)  # at the quota already: not worth parsing
    if kind == "edges":
        row = _store_graph(session, principal.owner, label, blob, labels, directed, limit)
    else:
        try:
            parsed = parse(blob, target=target.strip() if target else None, task=task)
        except UploadError as exc:
            raise field_problem(exc.field, exc.message, exc.status) from None
        data = parsed.canonical()  # what is stored, and counted against the quota
        with refusals_as_problems():
            check_quota(session, principal.owner, incoming=len(data))
        row = store(session, principal.owner, label, blob, parsed, data)
    session.commit()
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return upload_out(row)


def _store_graph(
    session: Session,
    owner: str,
    label: str,
    blob: bytes,
    labels: UploadFile | None,
    directed: bool,
    limit: int,
) -> Dataset:
    """Parse an edge list and its labels (``models.data.graph_upload``) and add its row."""
    label_blob = None
    if labels is not None:
        label_blob = labels.file.read(limit + 1)
        if len(label_blob) > limit:
            raise field_problem("labels", f"the file is over {limit // (1024 * 1024)} MiB", 413)
    try:
        parsed = parse_graph(blob, label_blob, directed=directed)
    except UploadError as exc:
        raise field_problem(exc.field, exc.message, exc.status) from None
    data = parsed.canonical()
    with refusals_as_problems():
        check_quota(session, owner, incoming=len(data))
    return store_graph(session, owner, label, blob, parsed, data)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(
    dataset_id: DatasetId, principal: CurrentPrincipal, session: SessionDep
) -> DatasetOut:
    """A built-in with its task and shape, or one of the caller's uploads."""
    desc = zoo_data.builtin_description(dataset_id)  # adding_37 too: a pattern's member
    if desc is not None:
        about = zoo_data.load_data(dataset_id).describe()  # any data kind
        return DatasetOut(
            id=dataset_id,
            name=dataset_id,
            kind="builtin",
            description=desc,
            task=about["task"],
            shape=about["shape"],
        )
    row = owned_dataset(session, principal.owner, dataset_id)
    if row is None:
        raise Problem(404, f"no dataset {dataset_id!r}")
    return upload_out(row)


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(
    dataset_id: DatasetId, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    """Delete an upload. 409 while a queued or running job trains on it; finished jobs
    keep their checkpoints and still predict (they hold the data's shape, not the data)."""
    if dataset_id in zoo_data.catalog():
        raise Problem(409, f"{dataset_id!r} is built in; only uploads can be deleted")
    row = owned_dataset(session, principal.owner, dataset_id)
    if row is None:
        raise Problem(404, f"no dataset {dataset_id!r}")
    active = session.scalars(
        select(Job.id).where(
            Job.owner == principal.owner,
            Job.dataset == row.id,
            Job.status.in_(("queued", "running")),
        )
    ).all()
    if active:
        raise Problem(
            409, f"jobs {', '.join(active[:5])} are queued or running on it: cancel them first"
        )
    session.delete(row)
    session.commit()
    return Response(status_code=204)
