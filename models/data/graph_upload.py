"""Users' graphs: parse and validate an uploaded edge list, and load the stored form back.

An edge list is CSV or TSV text (the delimiter is the header's: a tab, else a comma) with
a header naming ``source`` and ``target`` and optionally ``weight``; one edge a line.
Node ids are any text (numbers too, read as text): the nodes are numbered in order of
first appearance and their ids kept as names, which the embedding routes accept. Node
labels, optional, are a second file of ``node,label`` lines (a header naming ``node`` and
``label``); every node needs one, and a label naming a node the edges do not is refused.

Refused, each with an ``UploadError`` naming the form field (``file`` or ``labels``) and
the line: a self-loop (an edge from a node to itself: a walk would stand still, and the
graph's owner should know it was in the data), the same edge twice (in either direction
for an undirected graph), a weight that is not a positive finite number, fewer than 2 or
more than ``max_nodes`` nodes, more than ``max_edges`` edges, fewer than 2 label classes
or more than ``max_classes``. Lines are read one record at a time with the caps of
``upload.py`` (a record's characters, a field's).

The stored form (``ParsedGraph.canonical()``) is an ``.npz`` without pickle: ``edges``
(E, 2) int64, ``weights`` (E,) float64 (absent: unweighted), ``names`` (n,) unicode,
``labels`` (n,) int64 (absent: unlabelled), ``directed`` (a 0-d bool).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from models.data.graphs import Graph
from models.data.upload import LIMITS, Limits, UploadError, _field_limit, _Records


@dataclass(frozen=True)
class GraphLimits:
    max_nodes: int = 100_000
    max_edges: int = 1_000_000
    max_classes: int = 1000


GRAPH_LIMITS = GraphLimits()


@dataclass(frozen=True)
class ParsedGraph:
    edges: np.ndarray  # (E, 2) int64
    weights: np.ndarray | None  # (E,) float64
    names: list[str]
    labels: np.ndarray | None  # (n,) int64 class indices
    classes: list[str] | None  # the label text of each class index
    directed: bool

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    def canonical(self) -> bytes:
        arrays = {"edges": self.edges, "names": np.array(self.names, dtype=np.str_)}
        if self.weights is not None:
            arrays["weights"] = self.weights
        if self.labels is not None:
            arrays["labels"] = self.labels
        buf = io.BytesIO()
        arrays["directed"] = np.array(self.directed)
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy types **kwds by allow_pickle
        return buf.getvalue()


def _rows(blob: bytes, field: str, limits: Limits) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank record after the header, which
    comes first as line 1; the delimiter is a tab when the header has one."""
    records = _Records(blob, limits.max_record_chars)
    try:
        first = blob.split(b"\n", 1)[0]
        reader = csv.reader(records, delimiter="\t" if b"\t" in first else ",")
        for row in reader:
            records.reset()
            if row and any(c.strip() for c in row):
                yield reader.line_num, [c.strip() for c in row]
    except csv.Error as exc:
        raise UploadError(field, f"malformed CSV: {exc}") from None
    except UnicodeDecodeError:
        raise UploadError(field, f"not UTF-8 text (line {records.lines + 1})") from None
    except UploadError as exc:
        raise UploadError(field, exc.message, exc.status) from None


def _header(
    line: int, row: list[str], need: tuple[str, ...], allowed: set[str], field: str
) -> dict[str, int]:
    names = [c.lower() for c in row]
    missing = [n for n in need if n not in names]
    if missing or len(set(names)) != len(names) or not set(names) <= allowed:
        raise UploadError(
            field,
            f"line {line}: the header must name {', '.join(need)}"
            f"{' (and optionally weight)' if 'weight' in allowed else ''}; it has {row[:5]}",
        )
    return {n: names.index(n) for n in names}


def parse_graph(
    blob: bytes,
    labels: bytes | None = None,
    *,
    directed: bool = False,
    limits: GraphLimits = GRAPH_LIMITS,
    text: Limits = LIMITS,
) -> ParsedGraph:
    """Validate an edge list (and its node labels); see the module docstring."""
    if not blob:
        raise UploadError("file", "the file is empty")
    index: dict[str, int] = {}
    edges: list[tuple[int, int]] = []
    weights: list[float] = []
    seen: dict[tuple[int, int], int] = {}  # edge -> its line
    with _field_limit(text.max_field_chars):
        rows = _rows(blob, "file", text)
        head = next(rows, None)
        if head is None:
            raise UploadError("file", "no header row: name the columns source,target[,weight]")
        col = _header(*head, ("source", "target"), {"source", "target", "weight"}, "file")
        for line, row in rows:
            if len(row) != len(col):
                raise UploadError(
                    "file", f"line {line}: {len(row)} fields, the header has {len(col)}"
                )
            u_name, v_name = row[col["source"]], row[col["target"]]
            if not u_name or not v_name:
                raise UploadError("file", f"line {line}: an empty node id")
            if u_name == v_name:
                raise UploadError(
                    "file",
                    f"line {line}: a self-loop on {u_name[:40]!r}; remove it (walks "
                    "step to a neighbour, and a node is not its own)",
                )
            if len(edges) >= limits.max_edges:
                raise UploadError("file", f"over {limits.max_edges:,} edges", 413)
            for name in (u_name, v_name):
                if name not in index:
                    if len(index) >= limits.max_nodes:
                        raise UploadError("file", f"over {limits.max_nodes:,} nodes", 413)
                    index[name] = len(index)
            u, v = index[u_name], index[v_name]
            key = (u, v) if directed or u < v else (v, u)
            if key in seen:
                raise UploadError(
                    "file",
                    f"line {line}: the edge {u_name[:40]!r} - {v_name[:40]!r} is also "
                    f"on line {seen[key]}; give each edge once",
                )
            seen[key] = line
            edges.append((u, v))
            if "weight" in col:
                weights.append(_weight(row[col["weight"]], line))
        if len(index) < 2:
            raise UploadError("file", "no edges: a graph needs at least 2 nodes and an edge")
        names = list(index)
        labelled = None if labels is None else _labels(labels, index, limits, text)
    return ParsedGraph(
        edges=np.array(edges, dtype=np.int64).reshape(-1, 2),
        weights=np.array(weights, dtype=np.float64) if "weight" in col else None,
        names=names,
        labels=None if labelled is None else labelled[0],
        classes=None if labelled is None else labelled[1],
        directed=directed,
    )


def _weight(cell: str, line: int) -> float:
    try:
        w = float(cell)
    except ValueError:
        w = math.nan
    if not (math.isfinite(w) and w > 0):
        raise UploadError("file", f"line {line}: weight {cell[:40]!r} is not a positive number")
    return w


def _labels(
    blob: bytes, index: dict[str, int], limits: GraphLimits, text: Limits
) -> tuple[np.ndarray, list[str]]:
    rows = _rows(blob, "labels", text)
    head = next(rows, None)
    if head is None:
        raise UploadError("labels", "no header row: name the columns node,label")
    col = _header(*head, ("node", "label"), {"node", "label"}, "labels")
    given: dict[int, str] = {}
    for line, row in rows:
        if len(row) != 2:
            raise UploadError("labels", f"line {line}: {len(row)} fields, the header has 2")
        node, label = row[col["node"]], row[col["label"]]
        if node not in index:
            raise UploadError("labels", f"line {line}: node {node[:40]!r} is in no edge")
        if index[node] in given:
            raise UploadError("labels", f"line {line}: node {node[:40]!r} is labelled twice")
        if not label:
            raise UploadError("labels", f"line {line}: an empty label")
        given[index[node]] = label
    if len(given) != len(index):
        missing = next(name for name, i in index.items() if i not in given)
        raise UploadError(
            "labels",
            f"{len(index) - len(given):,} nodes have no label (e.g. {missing[:40]!r}); "
            "label every node or send no labels",
        )
    classes = sorted(set(given.values()))
    if not 2 <= len(classes) <= limits.max_classes:
        raise UploadError("labels", f"{len(classes)} classes; 2 to {limits.max_classes} allowed")
    code = {c: i for i, c in enumerate(classes)}
    return np.array([code[given[i]] for i in range(len(index))], dtype=np.int64), classes


def load_graph_upload(blob: bytes, *, name: str) -> Graph:
    """A stored edge list (``ParsedGraph.canonical()``) as a ``Graph``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        edges, names = z["edges"], [str(s) for s in z["names"]]
        weights = tuple(z["weights"].tolist()) if "weights" in z else None
        labels = tuple(z["labels"].tolist()) if "labels" in z else None
        directed = bool(z["directed"])
    return Graph(
        name,
        len(names),
        tuple(map(tuple, edges.tolist())),
        directed=directed,
        labels=labels,
        description="an uploaded edge list",
        weights=weights,
        names=tuple(names),
    )
