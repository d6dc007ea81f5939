"""DeepWalk / node2vec: walks against the graph and node2vec's hand-derived transition
probabilities, the Huffman tree and hierarchical softmax as a distribution, the hand
written skip-gram gradients against autograd, held-out edges never walked, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from models.context import LocalContext
from models.data import Graph, load_data
from models.deepwalk import family, skipgram
from models.deepwalk.family import (
    FAMILY,
    DeepWalkParams,
    SkipGram,
    neighbors,
    plain_sgd,
    split_edges,
)
from models.deepwalk.skipgram import (
    HuffmanTree,
    context_pairs,
    hs_grads,
    hs_log_prob,
    ns_grads,
    ns_log_lik,
)
from models.deepwalk.walks import PAD, Adjacency, corpus, random_walks, transition_probs
from models.optim import OptimizerSpec, build_optimizer

# 0 - 1 - 2, 1 - 3, 0 - 2: from 0 to 1, node 1's neighbours are 0 (back), 2 (a neighbour of
# 0: distance 1) and 3 (distance 2)
KITE = torch.tensor([[0, 1], [1, 2], [1, 3], [0, 2]])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def arcs(adj: Adjacency) -> set[tuple[int, int]]:
    return {(int(k) // adj.n, int(k) % adj.n) for k in adj.keys}


@pytest.mark.parametrize(
    ("p", "q", "weighted"), [(1.0, 1.0, False), (0.5, 2.0, False), (2.0, 0.25, True)]
)
def test_walks_follow_edges(p: float, q: float, weighted: bool) -> None:
    g = load_data("les_miserables")
    assert isinstance(g, Graph)
    edges = torch.tensor(g.edges)
    weights = torch.rand(len(edges), generator=gen(1)) + 0.1 if weighted else None
    adj = Adjacency.of(g.n_nodes, edges, weights)
    walks = corpus(adj, 3, 12, p, q, gen())
    assert walks.shape == (3 * g.n_nodes, 12) and not bool((walks == PAD).any())
    # every node starts 3 walks, one per round
    assert torch.equal(
        torch.bincount(walks[:, 0], minlength=g.n_nodes), torch.full((g.n_nodes,), 3)
    )
    steps = set(zip(walks[:, :-1].flatten().tolist(), walks[:, 1:].flatten().tolist(), strict=True))
    assert steps <= arcs(adj)


def test_a_directed_walk_stops_at_a_sink() -> None:
    adj = Adjacency.of(3, torch.tensor([[0, 1], [1, 2]]), directed=True)
    walks = random_walks(adj, torch.tensor([0, 2]), 5, 0.5, 2.0, gen())
    assert walks.tolist() == [[0, 1, 2, PAD, PAD], [2, PAD, PAD, PAD, PAD]]


@pytest.mark.parametrize(("p", "q"), [(1.0, 1.0), (0.5, 2.0), (4.0, 0.25)])
def test_node2vec_transition_probabilities_by_hand(p: float, q: float) -> None:
    """π(x | prev 0, cur 1) ∝ α_pq: 1/p back to 0, 1 to 2 (a neighbour of 0), 1/q to 3
    (Grover & Leskovec 2016, eq. 2); computed, and the sampler's frequencies."""
    adj = Adjacency.of(4, KITE)
    hand = torch.tensor([1 / p, 0.0, 1.0, 1 / q], dtype=torch.float64)
    hand /= hand.sum()
    torch.testing.assert_close(transition_probs(adj, 0, 1, p, q), hand)
    walks = random_walks(adj, torch.zeros(60_000, dtype=torch.int64), 3, p, q, gen())
    third = walks[walks[:, 1] == 1, 2]
    freq = torch.bincount(third, minlength=4).double() / len(third)
    assert (freq - hand).abs().max() < 4 * math.sqrt(0.25 / len(third))  # 4 σ at most


def test_weighted_transition_probabilities_by_hand() -> None:
    """With edge weights π ∝ α_pq · w(cur, x): weights 1, 2, 4 on 1-0, 1-2, 1-3."""
    w = torch.tensor([1.0, 2.0, 4.0, 1.0])
    adj = Adjacency.of(4, KITE, w)
    hand = torch.tensor([1 / 0.5 * 1.0, 0.0, 1.0 * 2.0, 1 / 2.0 * 4.0], dtype=torch.float64)
    torch.testing.assert_close(transition_probs(adj, 0, 1, 0.5, 2.0), hand / hand.sum())
    first = random_walks(adj, torch.ones(40_000, dtype=torch.int64), 2, 1.0, 1.0, gen())[:, 1]
    freq = torch.bincount(first, minlength=4).double() / len(first)
    torch.testing.assert_close(freq, torch.tensor([1, 0, 2, 4]).double() / 7, atol=0.01, rtol=0)


def test_huffman_tree_is_a_prefix_code_shortest_for_frequent_nodes() -> None:
    counts = torch.tensor([50, 1, 2, 30, 4, 4, 8, 1])
    tree = HuffmanTree.of(counts)
    codes = ["".join(str(int(c)) for c in tree.codes[i][tree.mask[i]]) for i in range(8)]
    assert all(not a.startswith(b) for a in codes for b in codes if a != b)
    lengths = tree.mask.sum(1)
    assert lengths[0] == lengths.min() and lengths[1] == lengths.max()
    # Kraft's equality: a full binary tree
    assert sum(2.0 ** -int(n) for n in lengths) == 1.0
    assert bool((tree.points[tree.mask] < 7).all())  # inner nodes 0..n-2
    assert bool((tree.points[:, 0] == 6).all())  # every path starts at the root


def test_hierarchical_softmax_sums_to_one_over_the_nodes() -> None:
    n, d = 11, 5
    tree = HuffmanTree.of(torch.randint(1, 100, (n,), generator=gen()))
    inner = torch.randn(n - 1, d, generator=gen(1))
    v = torch.randn(3, d, generator=gen(2))
    for row in v:
        logp = hs_log_prob(row.expand(n, d), inner, tree, torch.arange(n))
        torch.testing.assert_close(logp.exp().sum(), torch.tensor(1.0))


@pytest.mark.parametrize("n", [9, 700])  # one matrix product for every row; gathered rows
def test_hierarchical_softmax_gradients_match_autograd(n: int) -> None:
    d, b = 6, 40
    tree = HuffmanTree.of(torch.randint(1, 50, (n,), generator=gen()))
    assert skipgram._dense(n, n - 1, b, tree.points.shape[1]) == (n == 9)
    inner = torch.randn(n - 1, d, generator=gen(1), requires_grad=True)
    vectors = torch.randn(n, d, generator=gen(2), requires_grad=True)
    inputs, targets = torch.randint(n, (2, b), generator=gen(3))
    loss = -hs_log_prob(vectors[inputs], inner, tree, targets).mean()
    loss.backward()
    mine = hs_grads(vectors.detach(), inner.detach(), tree, inputs, targets)
    assert (mine.rows_v is None) == (n == 9)  # counted: whole matrices; gathered: rows
    torch.testing.assert_close(mine.loss, loss.detach())
    grad_v, grad_inner = mine.dense(vectors, inner)
    torch.testing.assert_close(grad_v, vectors.grad)
    torch.testing.assert_close(grad_inner, inner.grad)


@pytest.mark.parametrize("n", [9, 200])
def test_negative_sampling_gradients_match_autograd(n: int) -> None:
    d, b, k = 6, 40, 3
    assert skipgram._dense(n, n, b, 1 + k) == (n == 9)
    out = torch.randn(n, d, generator=gen(1), requires_grad=True)
    vectors = torch.randn(n, d, generator=gen(2), requires_grad=True)
    inputs, targets = torch.randint(n, (2, b), generator=gen(3))
    noise = torch.randint(n, (b, k), generator=gen(4))
    loss = -ns_log_lik(vectors[inputs], out, targets, noise).mean()
    loss.backward()
    mine = ns_grads(vectors.detach(), out.detach(), inputs, targets, noise)
    torch.testing.assert_close(mine.loss, loss.detach())
    grad_v, grad_out = mine.dense(vectors, out)
    torch.testing.assert_close(grad_v, vectors.grad)
    torch.testing.assert_close(grad_out, out.grad)


@pytest.mark.parametrize("n", [9, 700])  # whole-matrix gradients; gathered rows
def test_plain_sgd_on_the_touched_rows_is_the_optimizers_dense_step(n: int) -> None:
    """``_update``'s in-place step on the rows a batch touched (repeats summed) equals the
    job's SGD optimizer stepping on the dense gradients (0 on every other row); with
    weight decay, which moves every row, the step goes through the optimizer."""
    p = DeepWalkParams(dim=6)
    info = Graph("g", n, ((0, 1),)).info
    tree = HuffmanTree.of(torch.randint(1, 50, (n,), generator=gen()))
    inputs, targets = torch.randint(n, (2, 40), generator=gen(3))
    steps = []
    for sparse in (True, False):
        module = FAMILY.build(p, info)
        assert isinstance(module, SkipGram)
        module.vectors.data = torch.randn(n, 6, generator=gen(1))
        module.context.data = torch.randn(n - 1, 6, generator=gen(2))
        opt = build_optimizer(OptimizerSpec(name="sgd", lr=0.7), module.parameters())
        assert plain_sgd(opt)
        grads = hs_grads(module.vectors.detach(), module.context.detach(), tree, inputs, targets)
        family._update(module, opt, grads, sparse)
        steps.append((module.vectors.detach(), module.context.detach()))
    for sparse_step, dense_step in zip(*steps, strict=True):
        torch.testing.assert_close(sparse_step, dense_step)
    decayed = OptimizerSpec(name="sgd", lr=0.7, weight_decay=0.1)
    assert not plain_sgd(build_optimizer(decayed, module.parameters()))
    assert not plain_sgd(build_optimizer(OptimizerSpec(name="adam"), module.parameters()))


def test_context_pairs_lie_within_the_window_and_skip_padding() -> None:
    walks = torch.tensor([[0, 1, 2, 3, 4, 5], [6, 7, 8, PAD, PAD, PAD]])
    pairs = context_pairs(walks, 2, gen())
    where = {
        v: (r, c) for r, row in enumerate(walks.tolist()) for c, v in enumerate(row) if v != PAD
    }
    assert len(pairs) > 0 and not bool((pairs == PAD).any())
    for u, v in pairs.tolist():
        (ru, cu), (rv, cv) = where[u], where[v]
        assert ru == rv and 1 <= abs(cu - cv) <= 2
    # over many draws of the reduced windows, every pair at offsets 1 and 2, both ways
    seen = {tuple(p) for s in range(20) for p in context_pairs(walks, 2, gen(s)).tolist()}
    assert len(seen) == 2 * (5 + 4) + 2 * (2 + 1)


def test_context_pairs_at_window_one_are_every_step_both_ways() -> None:
    """With window 1 every reduced window is 1: the pairs are each step of each walk, both
    ways, once, none across PAD; and a walk of one node has none."""
    walks = torch.tensor([[0, 1, 2, PAD], [3, 4, 5, 6]])
    pairs = sorted(map(tuple, context_pairs(walks, 1, gen()).tolist()))
    steps = [(0, 1), (1, 2), (3, 4), (4, 5), (5, 6)]
    assert pairs == sorted(steps + [(v, u) for u, v in steps])
    assert context_pairs(torch.tensor([[7]]), 3, gen()).shape == (0, 2)


def test_held_out_edges_are_never_walked_and_no_node_loses_all_its_edges() -> None:
    g = load_data("karate")
    assert isinstance(g, Graph)
    kept, held = split_edges(g, 0.3, gen())
    assert len(held) == int(0.3 * len(g.edges)) and len(kept) + len(held) == len(g.edges)
    edges = torch.tensor(g.edges)
    adj = Adjacency.of(g.n_nodes, edges[kept])
    assert bool((adj.degree(torch.arange(g.n_nodes)) > 0).all())
    walks = corpus(adj, 5, 20, 1.0, 1.0, gen())
    steps = set(zip(walks[:, :-1].flatten().tolist(), walks[:, 1:].flatten().tolist(), strict=True))
    out = {(u, v) for u, v in edges[held].tolist()} | {(v, u) for u, v in edges[held].tolist()}
    assert not steps & out


def _train(graph: Graph, seed: int, **params: object) -> tuple[SkipGram, LocalContext]:
    p = DeepWalkParams(**{"walks_per_node": 5, "walk_length": 10, "dim": 8, **params})  # type: ignore[arg-type]
    module = FAMILY.build(p, graph.info)
    assert isinstance(module, SkipGram)
    ctx = LocalContext(
        epochs=3, batch_size=64, seed=seed, optimizer=OptimizerSpec(name="sgd", lr=0.5)
    )
    FAMILY.fit(module, graph, p, ctx)
    return module, ctx


def test_same_seed_same_embedding() -> None:
    g = load_data("karate")
    assert isinstance(g, Graph)
    a, _ = _train(g, 3, holdout=0.0)
    b, _ = _train(g, 3, holdout=0.0)
    c, _ = _train(g, 4, holdout=0.0)
    assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.vectors, c.vectors)


def test_two_cliques_embed_apart() -> None:
    """Two 6-cliques joined by one edge: each node's nearest neighbours are in its clique,
    and the final metrics are logged."""
    clique = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    edges = tuple(clique + [(i + 6, j + 6) for i, j in clique] + [(0, 6)])
    g = Graph("cliques", 12, edges, labels=(0,) * 6 + (1,) * 6)
    module, ctx = _train(g, 0, holdout=0.1, objective="negative_sampling")
    near = neighbors(module, torch.arange(12), 3)["nodes"]
    assert bool(((near < 6) == (torch.arange(12) < 6).unsqueeze(1)).all())
    final = ctx.history[-1][1]
    assert final.keys() == {"test_link_auc", "test_node_accuracy"}
    assert final["test_node_accuracy"] == 1.0


def test_a_corpus_over_the_token_cap_is_refused() -> None:
    g = load_data("sbm10k")
    assert isinstance(g, Graph)
    p = DeepWalkParams(walks_per_node=100, walk_length=100)
    with pytest.raises(ValueError, match="walks_per_node 100 × walk_length 100"):
        FAMILY.build(p, g.info)  # at submission (the API's 422), not in fit
    FAMILY.build(DeepWalkParams(walks_per_node=50, walk_length=40), g.info)  # 20,000,000
