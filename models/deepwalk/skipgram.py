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


def _dense(rows: int, path: int) -> bool:
    """Whether scoring every input against all ``rows`` output vectors (one matrix product,
    (B, rows)) beats gathering each pair's ``path`` rows ((B, path, d), memory-bound): on
    small graphs, by measure up to ~32 rows per path row."""
    return rows <= 32 * path


def _grads(
    v: Tensor, out: Tensor, rows: Tensor, sign: Tensor, weight: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Loss −Σ weight · log σ(sign · u_row · v) over each pair's ``rows`` (B, R) of ``out``,
    and its gradients by hand (no autograd): (loss, ∂/∂v (B, d), ∂/∂out (rows of out, d)).

    ∂(−log σ(s f))/∂f = −s σ(−s f), with f = u · v: ∂/∂v = Σ_r g_r u_r, ∂/∂u_r = g_r v."""
    b, r = rows.shape
    if _dense(len(out), r):  # every row scored by one product, the path's gathered
        f = (v @ out.T).gather(1, rows)
    else:
        u = out[rows]  # (B, R, d)
        f = torch.bmm(u, v.unsqueeze(2)).squeeze(2)
    sf = sign * f
    loss = -(F.logsigmoid(sf) * weight).sum()
    g = -sign * torch.sigmoid(-sf) * weight  # ∂loss/∂f, (B, R)
    if _dense(len(out), r):
        dense_g = torch.zeros(b, len(out), dtype=v.dtype, device=v.device).scatter_add_(1, rows, g)
        return loss, dense_g @ out, dense_g.T @ v
    grad_out = torch.zeros_like(out).index_add_(
        0, rows.flatten(), (g.unsqueeze(2) * v.unsqueeze(1)).reshape(b * r, -1)
    )
    return loss, torch.bmm(g.unsqueeze(1), u).squeeze(1), grad_out


def hs_grads(
    v: Tensor, inner: Tensor, tree: HuffmanTree, targets: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The mean over the batch of −``hs_log_prob`` and its gradients by hand (word2vec's
    own): (loss, ∂/∂v (B, d), ∂/∂inner (n − 1, d))."""
    sign = 1.0 - 2.0 * tree.codes[targets]
    return _grads(v, inner, tree.points[targets], sign, tree.mask[targets] / len(v))


def ns_grads(
    v: Tensor, out: Tensor, targets: Tensor, noise: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The mean over the batch of −``ns_log_lik`` and its gradients by hand: (loss, ∂/∂v
    (B, d), ∂/∂out (n, d)); the target is pulled towards v, the noise pushed away."""
    rows = torch.cat([targets.unsqueeze(1), noise], 1)  # (B, 1 + k)
    sign = torch.ones(rows.shape, dtype=v.dtype, device=v.device)
    sign[:, 1:] = -1.0
    return _grads(v, out, rows, sign, torch.full_like(sign, 1.0 / len(v)))


def noise_distribution(counts: Tensor) -> Tensor:
    """The unigram distribution raised to 3/4 (Mikolov et al. 2013b, §2.2), float64 (n,)."""
    w = counts.double().pow(0.75)
    return w / w.sum()


def context_pairs(walks: Tensor, window: int, generator: torch.Generator) -> Tensor:
    """(P, 2) (input, context) pairs of the walks (W, L) with word2vec's reduced window,
    in a random order; pairs touching PAD are left out."""
    b = torch.randint(1, window + 1, walks.shape, generator=generator)  # each position's window
    pairs = []
    for o in range(1, min(window, walks.shape[1] - 1) + 1):
        left, right = walks[:, :-o], walks[:, o:]
        both = (left != PAD) & (right != PAD)
        fwd = both & (b[:, :-o] >= o)  # left predicts right
        bwd = both & (b[:, o:] >= o)  # right predicts left
        pairs += [torch.stack([left[fwd], right[fwd]], 1), torch.stack([right[bwd], left[bwd]], 1)]
    out = torch.cat(pairs) if pairs else torch.zeros(0, 2, dtype=torch.int64)
    return out[torch.randperm(len(out), generator=generator)]
