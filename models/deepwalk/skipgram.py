"""Skip-gram (Mikolov et al. 2013a, b) on walks: each node predicts the nodes near it.

Pairs: word2vec's reduced window: for each walk position a window b is drawn uniformly
from 1..``window`` and the node predicts the nodes up to b steps away on either side (so
nearer nodes count more). The probability of a context node x given an input node u is
either

- hierarchical softmax (Morin & Bengio 2005; Mikolov et al. 2013b, §2.1): the nodes are
  the leaves of a Huffman tree built on their frequencies in the walks; with the path from
  the root to x through inner nodes n_1..n_L and code bits c_j (1: the left child, as
  word2vec), p(x | u) = Π_j σ((1 − 2 c_j) · θ_{n_j} · v_u), a distribution over the leaves
  (each inner node splits its mass between its two children); or
- negative sampling (Mikolov et al. 2013b, eq. 4): log σ(u_x · v_u) + Σ_k log σ(−u_{z_k} · v_u)
  with k noise nodes z drawn from the unigram distribution to the power 3/4.

v are the embeddings (word2vec's ``syn0``), θ / u the output vectors (``syn1`` /
``syn1neg``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from models.deepwalk.walks import PAD


@dataclass(frozen=True)
class HuffmanTree:
    """Each leaf's root-to-leaf path, padded to the deepest: ``points`` (n, D) the inner
    nodes (0..n-2), ``codes`` (n, D) their bits, ``mask`` (n, D) where the path is."""

    points: Tensor  # int64
    codes: Tensor  # float32
    mask: Tensor  # bool

    @classmethod
    def of(cls, counts: Tensor) -> HuffmanTree:
        """Huffman's tree on ``counts`` (n ≥ 2 leaves); ties broken by index, so the same
        counts give the same tree. Inner node i is the (i+1)-th merge; the root is n-2."""
        n = len(counts)
        heap = [(int(c), i) for i, c in enumerate(counts.tolist())]
        heapq.heapify(heap)
        parent = [0] * (2 * n - 1)
        bit = [0] * (2 * n - 1)
        for inner in range(n, 2 * n - 1):
            (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
            parent[a], parent[b], bit[a], bit[b] = inner, inner, 0, 1
            heapq.heappush(heap, (c1 + c2, inner))
        paths: list[list[tuple[int, int]]] = []
        for leaf in range(n):
            path, node = [], leaf
            while node != 2 * n - 2:
                path.append((parent[node] - n, bit[node]))
                node = parent[node]
            paths.append(path[::-1])
        depth = max(len(path) for path in paths)
        points = torch.zeros(n, depth, dtype=torch.int64)
        codes = torch.zeros(n, depth)
        mask = torch.zeros(n, depth, dtype=torch.bool)
        for leaf, path in enumerate(paths):
            points[leaf, : len(path)] = torch.tensor([pt for pt, _ in path])
            codes[leaf, : len(path)] = torch.tensor([c for _, c in path], dtype=torch.float32)
            mask[leaf, : len(path)] = True
        return cls(points, codes, mask)

    @cached_property
    def paths(self) -> Tensor:
        """(2, n, n − 1) float32, each leaf's path as rows of indicators: [0][x, j] = 1 where
        x's path goes through inner node j with bit 0 (sign +1), [1][x, j] with bit 1."""
        n, depth = self.points.shape
        leaf = torch.arange(n, device=self.points.device).unsqueeze(1).expand(n, depth)
        at = (self.codes.long() * n + leaf) * (n - 1) + self.points
        out = torch.zeros(2 * n * (n - 1), device=self.points.device)
        return out.index_fill_(0, at[self.mask], 1.0).view(2, n, n - 1)


def hs_log_prob(v: Tensor, inner: Tensor, tree: HuffmanTree, targets: Tensor) -> Tensor:
    """log p(target | input) by hierarchical softmax: ``v`` (B, d) the inputs' embeddings,
    ``inner`` (n-1, d) the inner nodes' vectors, ``targets`` (B,) -> (B,)."""
    points, mask = tree.points[targets], tree.mask[targets]  # (B, D)
    f = torch.einsum("bd,bld->bl", v, inner[points])  # θ_{n_j} · v_u, (B, D)
    sign = 1.0 - 2.0 * tree.codes[targets]
    return (F.logsigmoid(sign * f) * mask).sum(-1)


def ns_log_lik(v: Tensor, out: Tensor, targets: Tensor, noise: Tensor) -> Tensor:
    """The negative-sampling objective (B,): ``v`` (B, d), ``out`` (n, d) the output vectors,
    ``targets`` (B,), ``noise`` (B, k) noise nodes."""
    pos = F.logsigmoid((v * out[targets]).sum(-1))
    neg = F.logsigmoid(-torch.einsum("bd,bkd->bk", v, out[noise])).sum(-1)
    return pos + neg


DENSE_RATIO = 8  # a product's multiply-add against a gathered row's, by measure (about)


def _dense(n: int, rows: int, batch: int, path: int) -> bool:
    """Whether a minibatch is scored as counts, every node against every output row (three
    products of O(n · rows · d)), rather than by gathering each pair's ``path`` rows
    (O(batch · path · d), memory-bound): on small graphs."""
    return n * rows <= DENSE_RATIO * batch * path


@dataclass(frozen=True)
class Grads:
    """A minibatch's loss and its gradients: ``grad_v`` for the embeddings' rows ``rows_v``
    (repeats to be summed) and ``grad_out`` for the output vectors' ``rows_out``, or, where
    the rows are None, for the whole matrix."""

    loss: Tensor
    grad_v: Tensor
    rows_v: Tensor | None
    grad_out: Tensor
    rows_out: Tensor | None

    def dense(self, vectors: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
        """The gradients as whole matrices shaped like ``vectors`` and ``out``."""
        pairs = ((vectors, self.grad_v, self.rows_v), (out, self.grad_out, self.rows_out))
        v, o = (g if r is None else torch.zeros_like(p).index_add_(0, r, g) for p, g, r in pairs)
        return v, o


def _counted_grads(vectors: Tensor, out: Tensor, pos: Tensor, neg: Tensor) -> Grads:
    """Loss −Σ_{u,r} (pos[u, r] log σ(f) + neg[u, r] log σ(−f)), f = u_r · v_u over every
    node u and output row r, and its gradients by hand: a batch's pairs counted, the same
    sum grouped by (input, row). ∂loss/∂f = neg σ(f) − pos σ(−f) =: g; ∂/∂v = g out,
    ∂/∂out = gᵀ v."""
    f = vectors @ out.T  # (n, m)
    loss = -(pos * F.logsigmoid(f) + neg * F.logsigmoid(-f)).sum()
    g = neg * torch.sigmoid(f) - pos * torch.sigmoid(-f)
    return Grads(loss, g @ out, None, g.T @ vectors, None)


def _gathered_grads(
    vectors: Tensor, out: Tensor, inputs: Tensor, rows: Tensor, sign: Tensor, weight: Tensor
) -> Grads:
    """Loss −Σ weight · log σ(sign · u_row · v_input) over each pair's ``rows`` (B, R) of
    ``out``, and its gradients by hand for those rows: ∂(−log σ(s f))/∂f = −s σ(−s f) =: g,
    with f = u · v: ∂/∂v = Σ_r g_r u_r, ∂/∂u_r = g_r v."""
    b, r = rows.shape
    # index_select and a product summed: a few times faster than indexing and bmm at this shape
    v = vectors.index_select(0, inputs)  # (B, d)
    u = out.index_select(0, rows.flatten()).view(b, r, -1)  # (B, R, d)
    sf = sign * (u * v.unsqueeze(1)).sum(-1)
    loss = -(F.logsigmoid(sf) * weight).sum()
    g = -sign * torch.sigmoid(-sf) * weight  # ∂loss/∂f, (B, R)
    grad_v = torch.bmm(g.unsqueeze(1), u).squeeze(1)
    grad_rows = (g.unsqueeze(2) * v.unsqueeze(1)).view(b * r, -1)
    return Grads(loss, grad_v, inputs, grad_rows, rows.flatten())


def _counts(inputs: Tensor, targets: Tensor, n: int, m: int, scale: float) -> Tensor:
    """(n, m) ``scale`` × the number of pairs (input u, target x) for each (u, x)."""
    counts = torch.bincount(inputs * m + targets, minlength=n * m).view(n, m)
    return counts.to(torch.float32) * scale


def hs_grads(
    vectors: Tensor, inner: Tensor, tree: HuffmanTree, inputs: Tensor, targets: Tensor
) -> Grads:
    """The mean over the pairs (``inputs``, ``targets``) of −``hs_log_prob`` and its
    gradients by hand (word2vec's own) for ``vectors`` (n, d) and ``inner`` (n − 1, d)."""
    b, n, m = len(inputs), len(vectors), len(inner)
    if _dense(n, m, b, tree.points.shape[1]):
        pos, neg = _counts(inputs, targets, n, n, 1.0 / b) @ tree.paths  # (2, n, m)
        return _counted_grads(vectors, inner, pos, neg)
    rows = tree.points.index_select(0, targets)  # (B, D); index_select, not [targets]: faster
    sign = 1.0 - 2.0 * tree.codes.index_select(0, targets)
    weight = tree.mask.index_select(0, targets) / b
    return _gathered_grads(vectors, inner, inputs, rows, sign, weight)


def ns_grads(vectors: Tensor, out: Tensor, inputs: Tensor, targets: Tensor, noise: Tensor) -> Grads:
    """The mean over the pairs of −``ns_log_lik`` and its gradients by hand, for
    ``vectors`` and ``out`` (n, d), ``noise`` (B, k); the target is pulled towards v, the
    noise pushed away."""
    (b, k), n = noise.shape, len(vectors)
    if _dense(n, n, b, 1 + k):
        pos = _counts(inputs, targets, n, n, 1.0 / b)
        neg = _counts(inputs.repeat_interleave(k), noise.flatten(), n, n, 1.0 / b)
        return _counted_grads(vectors, out, pos, neg)
    rows = torch.cat([targets.unsqueeze(1), noise], 1)  # (B, 1 + k)
    sign = torch.ones(rows.shape, dtype=vectors.dtype, device=vectors.device)
    sign[:, 1:] = -1.0
    weight = torch.full_like(sign, 1.0 / b)
    return _gathered_grads(vectors, out, inputs, rows, sign, weight)


def noise_distribution(counts: Tensor) -> Tensor:
    """The unigram distribution raised to 3/4 (Mikolov et al. 2013b, §2.2), float64 (n,)."""
    w = counts.double().pow(0.75)
    return w / w.sum()


def context_pairs(walks: Tensor, window: int, generator: torch.Generator) -> Tensor:
    """(P, 2) (input, context) pairs of the walks (W, L) with word2vec's reduced window,
    in a random order; pairs touching PAD are left out. All offsets are cut at once, as
    (offset, direction, W, L) masks: a few large operations, not four per offset."""
    b = torch.randint(1, window + 1, walks.shape, generator=generator)  # each position's window
    w = min(window, walks.shape[1] - 1)
    if w < 1:
        return torch.zeros(0, 2, dtype=torch.int64)
    pad = (0, w)  # PAD past the end, so position i's offset o is column i + o of a view
    right = F.pad(walks, pad, value=PAD).unfold(1, w + 1, 1)[:, :, 1:].permute(2, 0, 1)
    b_right = F.pad(b, pad).unfold(1, w + 1, 1)[:, :, 1:].permute(2, 0, 1)  # (w, W, L)
    left = walks.expand_as(right)
    offset = torch.arange(1, w + 1).view(w, 1, 1)
    both = (left != PAD) & (right != PAD)
    # direction 0: left predicts right (left's window reaches); 1: right predicts left
    take = torch.stack([both & (b >= offset), both & (b_right >= offset)], 1)  # (w, 2, W, L)
    # nonzero and index_select, not boolean and advanced indexing: the cut 3x faster, by measure
    at = take.flatten().nonzero().squeeze(1)
    inputs = torch.stack([left, right], 1).flatten().index_select(0, at)
    contexts = torch.stack([right, left], 1).flatten().index_select(0, at)
    order = torch.randperm(len(at), generator=generator)
    return torch.stack([inputs.index_select(0, order), contexts.index_select(0, order)], 1)
