"""Graphs: nodes 0..n_nodes-1 and an edge list, optionally a weight per edge, a class and
a name per node.

The natural representation, nothing more: families that walk it (DeepWalk) or pass
messages build their own adjacency from ``neighbors()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.data.info import DataInfo, declare_kind
from models.data.kinds import DataSize, describe_common, digest

GRAPH = declare_kind("graph", frozenset({"embedding", "node_classification"}))


@dataclass(frozen=True)
class Graph:
    name: str
    n_nodes: int
    edges: tuple[tuple[int, int], ...]  # (u, v); undirected graphs list each edge once
    directed: bool = False
    labels: tuple[int, ...] | None = None  # a class per node: node_classification
    description: str = ""
    weights: tuple[float, ...] | None = None  # a positive weight per edge; None: all 1
    names: tuple[str, ...] | None = None  # a name per node (an upload's ids); None: "0", "1", ..

    def node_names(self) -> list[str]:
        """Each node's name: the given ones, else its index as text."""
        return list(self.names) if self.names is not None else [str(i) for i in range(self.n_nodes)]

    def __post_init__(self) -> None:
        if self.n_nodes < 1:
            raise ValueError(f"{self.name}: a graph has at least one node")
        for u, v in self.edges:
            if not (0 <= u < self.n_nodes and 0 <= v < self.n_nodes):
                raise ValueError(f"{self.name}: edge ({u}, {v}) names a node outside 0..")
        if self.labels is not None and len(self.labels) != self.n_nodes:
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {self.n_nodes} nodes")
        if self.weights is not None and (
            len(self.weights) != len(self.edges) or not all(w > 0 for w in self.weights)
        ):
            raise ValueError(f"{self.name}: weights must be one positive number per edge")
        if self.names is not None and len(set(self.names)) != self.n_nodes:
            raise ValueError(f"{self.name}: names must be {self.n_nodes} distinct strings")

    @property
    def task(self) -> str:
        return "embedding" if self.labels is None else "node_classification"

    def neighbors(self) -> list[list[int]]:
        """Each node's neighbours (out-neighbours when directed), in edge order."""
        out: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for u, v in self.edges:
            out[u].append(v)
            if not self.directed:
                out[v].append(u)
        return out

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            name=self.name,
            task=self.task,
            input_shape=(self.n_nodes,),  # a node as a one-hot identity
            target_dim=1,
            n_classes=None if self.labels is None else len(set(self.labels)),
            n_train=self.n_nodes,
            kind=GRAPH,
            extra={"n_nodes": self.n_nodes, "n_edges": len(self.edges), "directed": self.directed},
        )

    def fingerprint(self) -> str:
        return digest(
            {
                "kind": GRAPH,
                "n_nodes": self.n_nodes,
                "edges": [list(e) for e in self.edges],
                "directed": self.directed,
                "labels": None if self.labels is None else list(self.labels),
                # only when given: a graph without them keeps its digest
                **({} if self.weights is None else {"weights": list(self.weights)}),
                **({} if self.names is None else {"names": list(self.names)}),
            }
        )

    def size(self) -> DataSize:
        labels = 0 if self.labels is None else self.n_nodes
        weights = 0 if self.weights is None else len(self.edges)
        return DataSize(examples=self.n_nodes, values=2 * len(self.edges) + labels + weights)

    def describe(self) -> dict[str, Any]:
        sizes = {"nodes": self.n_nodes, "edges": len(self.edges)}
        return describe_common(self, shape=[self.n_nodes, self.n_nodes], sizes=sizes)
