"""Truncated random walks: DeepWalk's uniform ones and node2vec's second-order biased ones.

DeepWalk (Perozzi, Al-Rfou & Skiena 2014, Algorithm 1) starts ``walks_per_node`` walks
of ``walk_length`` nodes at every node, the nodes shuffled each round, and steps to a
neighbour drawn in proportion to the edge's weight. node2vec (Grover & Leskovec 2016,
§3.2.2) biases the step from ``cur`` (reached from ``prev``) to a neighbour ``x`` by

    α_pq(prev, x) = 1/p if x = prev,  1 if x is a neighbour of prev,  1/q otherwise,

π(x | prev, cur) ∝ α_pq(prev, x) · w(cur, x); p = q = 1 is DeepWalk. The paper precomputes
an alias table per (prev, cur) edge, memory Σ deg² (2.5 GB for a 10,000-node graph with a
hub of degree 5,000); here each step is rejection sampling (as in KnightKing, Yang et al.
2019): propose x ∝ w(cur, x), accept with probability α / max(1/p, 1, 1/q), so memory is
the adjacency's and the walks', O(E + walks · length). Every walk steps at once, as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PAD = -1  # a walk that reached a node without out-edges (directed) stops; the rest is PAD


@dataclass(frozen=True)
class Adjacency:
    """Compressed sparse rows: node u's out-neighbours are ``indices[indptr[u]:indptr[u+1]]``
    (sorted), with cumulative weights ``cum`` (float64, over all rows; None: unweighted) and
    the sorted keys u·n + v of every arc, to test adjacency by binary search."""

    n: int
    indptr: Tensor  # (n + 1,) int64
    indices: Tensor  # (arcs,) int64
    cum: Tensor | None  # (arcs,) float64
    keys: Tensor  # (arcs,) int64

    @classmethod
    def of(
        cls, n: int, edges: Tensor, weights: Tensor | None = None, directed: bool = False
    ) -> Adjacency:
        """From (E, 2) edges (each undirected edge once) and optional (E,) positive weights."""
        src, dst = edges[:, 0].long(), edges[:, 1].long()
        w = weights.double() if weights is not None else None
        if not directed:
            src, dst = torch.cat([src, dst]), torch.cat([dst, src])
            w = torch.cat([w, w]) if w is not None else None
        keys, order = torch.sort(src * n + dst)
        counts = torch.bincount(src, minlength=n)
        indptr = torch.zeros(n + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(counts, 0)
        cum = torch.cumsum(w[order], 0) if w is not None else None
        return cls(n, indptr, dst[order], cum, keys)

    def degree(self, u: Tensor) -> Tensor:
        return self.indptr[u + 1] - self.indptr[u]

    def has_arc(self, u: Tensor, v: Tensor) -> Tensor:
        """(B,) bool: whether u -> v is an arc (both ways for an undirected edge)."""
        key = u * self.n + v
        at = torch.searchsorted(self.keys, key).clamp(max=max(len(self.keys) - 1, 0))
        return self.keys[at] == key if len(self.keys) else torch.zeros_like(key, dtype=torch.bool)

    def step(self, cur: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) a neighbour of each node drawn ∝ the arc's weight (nodes with degree ≥ 1)."""
        lo, hi = self.indptr[cur], self.indptr[cur + 1]
        r = torch.rand(len(cur), generator=generator, dtype=torch.float64)
        if self.cum is None:
            at = lo + (r * (hi - lo)).long()
        else:  # the arc whose cumulative-weight interval holds base + r · (the row's total)
            base = torch.where(lo > 0, self.cum[(lo - 1).clamp(min=0)], 0.0)
            total = self.cum[hi - 1] - base
            at = torch.searchsorted(self.cum, base + r * total, right=True)
        return self.indices[torch.minimum(at, hi - 1)]


def node2vec_bias(adj: Adjacency, prev: Tensor, x: Tensor, p: float, q: float) -> Tensor:
    """α_pq(prev, x), float64 (B,): 1/p back to prev, 1 to its neighbours, 1/q farther."""
    near = torch.where(adj.has_arc(prev, x), 1.0, 1.0 / q).double()
    return torch.where(x == prev, 1.0 / p, near)


def transition_probs(adj: Adjacency, prev: int, cur: int, p: float, q: float) -> Tensor:
    """π(· | prev, cur) over all n nodes, exactly (float64 (n,)): what ``random_walks``
    samples from at a second-order step."""
    lo, hi = int(adj.indptr[cur]), int(adj.indptr[cur + 1])
    x = adj.indices[lo:hi]
    w = torch.ones(hi - lo, dtype=torch.float64)
    if adj.cum is not None:  # each arc's weight: differences of the cumulative sums
        w = torch.diff(torch.cat([adj.cum.new_zeros(1), adj.cum])[lo : hi + 1])
    pi = torch.zeros(adj.n, dtype=torch.float64)
    pi.index_add_(0, x, w * node2vec_bias(adj, torch.full_like(x, prev), x, p, q))
    return pi / pi.sum()


def _biased_step(
    adj: Adjacency, prev: Tensor, cur: Tensor, p: float, q: float, generator: torch.Generator
) -> Tensor:
    """node2vec's step by rejection: proposals ∝ w(cur, x), accepted with α / max α."""
    top = max(1.0 / p, 1.0, 1.0 / q)
    out = torch.empty_like(cur)
    todo = torch.arange(len(cur))
    while len(todo):
        x = adj.step(cur[todo], generator)
        alpha = node2vec_bias(adj, prev[todo], x, p, q)
        ok = torch.rand(len(todo), generator=generator, dtype=torch.float64) * top < alpha
        out[todo[ok]] = x[ok]
        todo = todo[~ok]
    return out


def random_walks(
    adj: Adjacency, starts: Tensor, length: int, p: float, q: float, generator: torch.Generator
) -> Tensor:
    """(W, length) int64 walks from ``starts``; PAD after a node without out-arcs."""
    walks = torch.full((len(starts), length), PAD, dtype=torch.int64)
    walks[:, 0] = starts
    uniform = p == 1.0 and q == 1.0
    for t in range(1, length):
        cur = walks[:, t - 1]
        live = (cur != PAD).nonzero().squeeze(1)
        live = live[adj.degree(cur[live]) > 0]
        if not len(live):
            break
        if uniform or t == 1:  # the first step has no previous node: first order
            walks[live, t] = adj.step(cur[live], generator)
        else:
            walks[live, t] = _biased_step(adj, walks[live, t - 2], cur[live], p, q, generator)
    return walks


def corpus(
    adj: Adjacency,
    walks_per_node: int,
    length: int,
    p: float,
    q: float,
    generator: torch.Generator,
) -> Tensor:
    """DeepWalk's corpus: ``walks_per_node`` rounds, each a walk from every node in a fresh
    random order (Algorithm 1, lines 3-4), all rounds stepping at once; (walks_per_node · n,
    length) int64."""
    starts = torch.cat([torch.randperm(adj.n, generator=generator) for _ in range(walks_per_node)])
    return random_walks(adj, starts, length, p, q, generator)
