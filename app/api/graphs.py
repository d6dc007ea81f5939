"""Node embedding routes, the same for every family that declares the capability: node
vectors (EMBED), the nearest nodes by cosine similarity (NEIGHBORS) and a 2-D picture of
the embedding.

Nodes are named as the job's graph names them (an upload's ids, a built-in's character
names, else the index as text; an integer is read as its text). A node the graph does not
have is a 409: the model is transductive, a vector per node it was trained on, and a new
node needs a new job on the grown graph. No route knows a family by name.
"""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.common import PNG, PNGResponse, run_inference
from app.api.deps import JobModel, LoadedModel
from app.datasets import load_job_data
from app.problems import Problem
from models.data import Graph
from models.family import Capability

router = APIRouter(prefix="/v1/jobs", tags=["graphs"])

MAX_EMBED_NODES = 10_000  # nodes one embed request may ask for
MAX_K = 100  # neighbours one request may ask for
MAX_PLOTTED = 20_000  # nodes embedding.png draws (evenly spaced beyond)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[str | int] = Field(
        min_length=1,
        max_length=MAX_EMBED_NODES,
        description="node names as the graph names them (an integer is read as its text)",
    )


class EmbedOut(BaseModel):
    job_id: str
    checkpoint: str
    nodes: list[str]
    vectors: list[list[float]] = Field(description="one embedding per node, in request order")


class Neighbor(BaseModel):
    node: str
    similarity: float = Field(description="cosine similarity of the two embeddings")


class NeighborsOut(BaseModel):
    job_id: str
    checkpoint: str
    node: str
    neighbors: list[Neighbor] = Field(description="the k most similar other nodes, best first")


def _graph(model: JobModel) -> Graph:
    """The graph the job trained on; 409 when it is gone or is no graph."""
    job = model.job()
    try:
        data = load_job_data(job.dataset)
    except (KeyError, LookupError):
        raise Problem(409, f"dataset {job.dataset!r} of job {job.id} is not available") from None
    if not isinstance(data, Graph):
        raise Problem(409, f"job {job.id} was not trained on a graph")
    return data


def _indices(graph: Graph, nodes: list[str | int], job_id: str, field: str) -> torch.Tensor:
    """The nodes' indices; 409 for a node the graph does not have, saying how to get one
    (the message names no family: these routes serve any that declares the capability)."""
    index = {name: i for i, name in enumerate(graph.node_names())}
    names = [str(n) for n in nodes]
    unknown = [n for n in names if n not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        raise Problem(
            409,
            f"{field}: {shown} {'is' if len(unknown) == 1 else 'are'} not in the graph this "
            f"model was trained on ({graph.name}, {graph.n_nodes:,} nodes). The model is "
            "transductive: it learned one vector per node it walked, and a new node has "
            "none until it is trained on. Upload the grown graph (POST /v1/datasets) and "
            f"clone this job onto it (POST /v1/jobs/{job_id}/clone with "
            '{"dataset": "<the upload\'s id>"}).',
        )
    return torch.tensor([index[n] for n in names], dtype=torch.int64)


@router.post("/{job_id}/embed", response_model=EmbedOut)
def embed(body: EmbedRequest, model: LoadedModel) -> EmbedOut:
    """The embedding of each node (409 for a node the graph does not have)."""
    item = model.load()
    fn = item.family.capability(Capability.EMBED)  # 409 naming what it can do
    graph = _graph(model)
    nodes = _indices(graph, body.nodes, item.job_id, "nodes")
    out = run_inference(fn, item.module, nodes)
    return EmbedOut(
        job_id=item.job_id,
        checkpoint=item.checkpoint_id,
        nodes=[str(n) for n in body.nodes],
        vectors=out["vectors"].float().tolist(),
    )


@router.get("/{job_id}/neighbors", response_model=NeighborsOut)
def neighbors(
    model: LoadedModel,
    node: Annotated[str, Query(min_length=1, max_length=200, description="a node's name")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many neighbours")] = 10,
) -> NeighborsOut:
    """The k nodes whose embeddings are nearest the node's by cosine similarity, most
    similar first (fewer when the graph has fewer other nodes)."""
    item = model.load()
    fn = item.family.capability(Capability.NEIGHBORS)
    graph = _graph(model)
    index = _indices(graph, [node], item.job_id, "node")
    out = run_inference(fn, item.module, index, k)
    names = graph.node_names()
    found = zip(out["nodes"][0].tolist(), out["similarity"][0].tolist(), strict=True)
    return NeighborsOut(
        job_id=item.job_id,
        checkpoint=item.checkpoint_id,
        node=node,
        neighbors=[Neighbor(node=names[i], similarity=s) for i, s in found],
    )


@router.get("/{job_id}/embedding.png", response_class=PNGResponse, responses=PNG)
def embedding_png(model: LoadedModel) -> PNGResponse:
    """The embeddings' first two principal components, one dot per node, coloured by the
    node's label when the graph has labels (at most 20,000 nodes drawn, evenly spaced)."""
    from app.plots import embedding_png as draw

    item = model.load()
    fn = item.family.capability(Capability.EMBED)
    graph = _graph(model)
    step = -(-graph.n_nodes // MAX_PLOTTED)  # ceil: every node up to MAX_PLOTTED
    nodes = torch.arange(0, graph.n_nodes, step)
    vectors = run_inference(fn, item.module, nodes)["vectors"].float().numpy()
    labels = None if graph.labels is None else [graph.labels[i] for i in nodes.tolist()]
    names = graph.node_names()
    shown = len(nodes) < graph.n_nodes
    title = f"{item.job_id} on {graph.name}: PCA of {vectors.shape[1]}-d embeddings" + (
        f" ({len(nodes):,} of {graph.n_nodes:,} nodes)" if shown else ""
    )
    return PNGResponse(
        draw(vectors, labels=labels, names=[names[i] for i in nodes.tolist()], title=title)
    )
