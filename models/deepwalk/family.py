"""``deepwalk``: node embeddings from truncated random walks and skip-gram.

What it shows: DeepWalk (Perozzi, Al-Rfou & Skiena 2014) treats walks on a graph as
sentences and node ids as words, and learns one vector per node by skip-gram
(``skipgram.py``: hierarchical softmax or negative sampling); node2vec (Grover & Leskovec
2016) biases the walks with its return and in-out parameters p, q (``walks.py``;
p = q = 1 is DeepWalk). The seed notes' caveat holds: the model is transductive, a table
of vectors for the nodes it was trained on; a new node needs a new job on the grown graph.

Training follows word2vec: the walks are drawn once (from a seed drawn from
``ctx.generator``, kept in the checkpoint, so a resume redraws the same corpus), an epoch
is a pass over them in a random order, the loss of a minibatch of ``batch_size`` pairs is
their mean negative log-likelihood (its gradients written by hand, ``skipgram.py``), and
the learning rate decays linearly to 10⁻⁴ of the job's over the run, for whichever
optimizer the job names (word2vec's is SGD at 0.025 a pair, sequentially: ``sgd`` at
``0.025 × batch_size`` is its minibatch analogue, up to about 10 where nodes repeat in a
batch). The shared ``loop.train_epochs`` does not fit: its examples are a fixed tensor,
while the pairs of a corpus (up to 2 · window · walks · length of them) are cut from the
walks a chunk at a time.

Evaluation at the end, on the trained vectors: ``test_link_auc``, the ROC AUC of cosine
similarity separating edges held out before the walks (``holdout``) from as many node
pairs that are not edges; ``test_node_accuracy`` on labelled graphs, the accuracy of a
logistic regression on the standardised vectors, leave-one-out up to 200 nodes, else
5-fold.

Checkpoint ``state["model"]`` keys: ``vectors`` (n, dim), the embeddings, and ``context``
(n − 1, dim) the Huffman tree's inner nodes or (n, dim) the negative-sampling output
vectors; ``state`` also holds ``walk_seed``.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from models.data import GRAPH_DATASETS, DataInfo, Graph
from models.deepwalk.skipgram import (
    Grads,
    HuffmanTree,
    context_pairs,
    hs_grads,
    noise_distribution,
    ns_grads,
)
from models.deepwalk.walks import PAD, Adjacency, corpus
from models.family import Capability, Context, Diverged, Family, Params
from models.loop import Budget
from models.optim import SGD

MAX_TOKENS = 20_000_000  # nodes × walks_per_node × walk_length: 160 MB of walks
CHUNK_PAIRS = 1 << 18  # pairs cut from the walks at a time
LOO_MAX_NODES = 200  # leave-one-out node classification up to this many nodes, then 5-fold
MIN_LR = 1e-4  # word2vec's floor of the decayed learning rate, as a fraction of the start


class DeepWalkParams(Params):
    walks_per_node: int = Field(10, ge=1, le=100, description="walks started at every node (γ)")
    walk_length: int = Field(40, ge=2, le=200, description="nodes per walk (t)")
    window: int = Field(5, ge=1, le=20, description="skip-gram window: the largest offset (w)")
    dim: int = Field(64, ge=2, le=512, description="embedding size (d)")
    objective: Literal["hierarchical_softmax", "negative_sampling"] = Field(
        "hierarchical_softmax", description="skip-gram's output layer (DeepWalk's: hierarchical)"
    )
    negative: int = Field(5, ge=1, le=50, description="noise nodes per pair (negative_sampling)")
    p: float = Field(
        1.0, ge=0.01, le=100.0, description="node2vec return parameter: 1/p weighs a step back"
    )
    q: float = Field(
        1.0, ge=0.01, le=100.0, description="node2vec in-out parameter: 1/q weighs a step away"
    )
    holdout: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="fraction of edges held out before the walks, for the link-prediction "
        "AUC (0: none, every edge walked)",
    )


class SkipGram(nn.Module):
    """A table of node vectors (n, dim) and skip-gram's output vectors."""

    def __init__(self, params: DeepWalkParams, info: DataInfo) -> None:
        super().__init__()
        n = info.input_shape[0]
        rows = n - 1 if params.objective == "hierarchical_softmax" else n
        self.vectors = nn.Parameter(torch.zeros(n, params.dim))  # word2vec's syn0
        self.context = nn.Parameter(torch.zeros(rows, params.dim))  # syn1 / syn1neg

    @torch.no_grad()
    def reset(self, generator: torch.Generator) -> None:
        """word2vec's start: vectors uniform in ±0.5/dim, output vectors 0."""
        d = self.vectors.shape[1]
        u = torch.rand(self.vectors.shape, generator=generator)
        self.vectors.copy_((u - 0.5) / d)
        self.context.zero_()


def build(params: DeepWalkParams, info: DataInfo) -> SkipGram:
    """The model; a corpus over ``MAX_TOKENS`` node visits raises ``ValueError`` (the
    API's 422 on ``params``, at submission: the node count is the data's ``DataInfo``)."""
    tokens = info.input_shape[0] * params.walks_per_node * params.walk_length
    if tokens > MAX_TOKENS:
        raise ValueError(
            f"{info.input_shape[0]:,} nodes × walks_per_node {params.walks_per_node} × "
            f"walk_length {params.walk_length} = {tokens:,} node visits, over "
            f"{MAX_TOKENS:,}: fewer walks_per_node or a shorter walk_length"
        )
    return SkipGram(params, info)


# --- training -------------------------------------------------------------------------------


def split_edges(graph: Graph, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Edge indices (kept, held out): ``fraction`` of the edges in a random order, each
    taken only if both its ends keep another edge (no node loses its last one)."""
    e = len(graph.edges)
    want = int(fraction * e)
    degree = np.zeros(graph.n_nodes, dtype=np.int64)
    for u, v in graph.edges:
        degree[u] += 1
        degree[v] += 1
    held: list[int] = []
    for i in torch.randperm(e, generator=generator).tolist():
        if len(held) >= want:
            break
        u, v = graph.edges[i]
        if u != v and degree[u] > 1 and degree[v] > 1:
            degree[u] -= 1
            degree[v] -= 1
            held.append(i)
    mask = torch.ones(e, dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().squeeze(1), torch.tensor(held, dtype=torch.int64)


def walk_corpus(
    graph: Graph, params: DeepWalkParams, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The edges held out (H, 2), then the walks (W, length) on the rest: the corpus a job
    trains on, drawn from ``generator`` (seeded with the job's ``walk_seed``)."""
    kept, held = split_edges(graph, params.holdout, generator)
    edges = torch.tensor(graph.edges, dtype=torch.int64).view(-1, 2)
    weights = None if graph.weights is None else torch.tensor(graph.weights)[kept]
    adj = Adjacency.of(graph.n_nodes, edges[kept], weights, graph.directed)
    p, q = params.p, params.q
    return corpus(adj, params.walks_per_node, params.walk_length, p, q, generator), edges[held]


class Objective:
    """The job's skip-gram loss on (input, context) pairs, with what it needs from the
    walks: the Huffman tree on node counts, or the noise distribution."""

    def __init__(self, params: DeepWalkParams, counts: Tensor, device: torch.device) -> None:
        self.params = params
        if params.objective == "hierarchical_softmax":
            tree = HuffmanTree.of(counts)
            self.tree = HuffmanTree(*(t.to(device) for t in (tree.points, tree.codes, tree.mask)))
        else:
            self.noise = noise_distribution(counts)  # drawn from on the CPU: ctx.generator's

    @torch.no_grad()
    def gradients(self, module: SkipGram, pairs: Tensor, generator: torch.Generator) -> Grads:
        """The pairs' (P, 2) mean negative log-likelihood, the minibatch's loss, and its
        gradients (by hand: ``skipgram.hs_grads``, ``ns_grads``, checked against autograd
        in the tests)."""
        inputs, targets = pairs[:, 0], pairs[:, 1]
        if self.params.objective == "hierarchical_softmax":
            return hs_grads(module.vectors, module.context, self.tree, inputs, targets)
        k = self.params.negative
        noise = torch.multinomial(self.noise, len(pairs) * k, True, generator=generator)
        return ns_grads(
            module.vectors, module.context, inputs, targets, noise.view(-1, k).to(inputs.device)
        )


def plain_sgd(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt`` is SGD without weight decay: its step leaves a row whose gradient is
    0 as it was, so a step may update the touched rows alone, in place (word2vec's)."""
    return isinstance(opt, SGD) and all(g["weight_decay"] == 0 for g in opt.param_groups)


@torch.no_grad()
def _update(module: SkipGram, opt: torch.optim.Optimizer, grads: Grads, sparse: bool) -> None:
    """One optimizer step on the gradients: with ``sparse`` (``plain_sgd``) w ← w − η g on
    the rows the batch touched, the same step as a dense one with g = 0 elsewhere, without
    writing the whole matrices; otherwise through the optimizer, on whole matrices."""
    params = (module.vectors, module.context)
    if sparse:
        lr = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
        for param, grad, rows in zip(
            params, (grads.grad_v, grads.grad_out), (grads.rows_v, grads.rows_out), strict=True
        ):
            if rows is None:
                param.add_(grad, alpha=-lr[id(param)])
            else:  # the gradient scaled in place: index_add_'s alpha is 4x slower, by measure
                param.index_add_(0, rows, grad.mul_(-lr[id(param)]))
        return
    module.vectors.grad, module.context.grad = grads.dense(*params)
    opt.step()


class Pass(NamedTuple):
    """What one pass over the walks did: its mean loss per pair over ``pairs`` pairs, the
    optimizer steps so far, and whether the job was asked to stop."""

    loss: float
    pairs: int
    step: int
    stopped: bool


def _done(budget: Budget, epoch: float, step: int) -> float:
    """The fraction of the job done, in its unit (epochs, counted within a pass, or steps):
    what the learning rate decays on."""
    if budget.epochs is not None:
        return epoch / budget.epochs
    return step / (budget.steps or 1)


def _decay(opt: torch.optim.Optimizer, base_lr: list[float], done: float) -> None:
    """word2vec's linear decay of each group's rate from its start, floored at ``MIN_LR``."""
    for group, lr in zip(opt.param_groups, base_lr, strict=True):
        group["lr"] = lr * max(MIN_LR, 1.0 - done)


def _pass(
    module: SkipGram,
    opt: torch.optim.Optimizer,
    walks: Tensor,
    objective: Objective,
    ctx: Context,
    at: tuple[int, int],
    base_lr: list[float],
) -> Pass:
    """One pass over the walks in a random order, from ``at`` (epoch, step) before it. The
    pairs are cut from ``per_chunk`` walks at a time: all of a corpus's would not fit."""
    epoch, step = at
    budget, params = Budget.of(ctx), objective.params
    sparse = plain_sgd(opt)
    order = torch.randperm(len(walks), generator=ctx.generator)
    per_chunk = max(1, CHUNK_PAIRS // (2 * params.window * walks.shape[1]))
    total, seen = 0.0, 0
    for lo in range(0, len(walks), per_chunk):
        pairs = context_pairs(walks[order[lo : lo + per_chunk]], params.window, ctx.generator)
        for batch in pairs.to(ctx.device).split(ctx.batch_size):
            if not budget.steps_left(step):
                return Pass(total / max(seen, 1), seen, step, stopped=False)
            if ctx.should_stop():
                return Pass(total / max(seen, 1), seen, step, stopped=True)
            _decay(opt, base_lr, _done(budget, epoch + lo / len(walks), step))
            grads = objective.gradients(module, batch, ctx.generator)
            if not bool(torch.isfinite(grads.loss)):
                raise Diverged(step + 1)
            _update(module, opt, grads, sparse)
            step += 1
            total, seen = total + float(grads.loss) * len(batch), seen + len(batch)
    return Pass(total / max(seen, 1), seen, step, False)


def _start(module: SkipGram, opt: torch.optim.Optimizer, ctx: Context) -> tuple[int, int, int]:
    """(walk seed, epoch, step): drawn afresh, or the resumed job's, its state loaded."""
    if ctx.resume is None:
        walk_seed = int(torch.randint(2**31 - 1, (), generator=ctx.generator))
        module.reset(ctx.generator)
        return walk_seed, 0, 0
    module.load_state_dict(ctx.resume["model"])
    opt.load_state_dict(ctx.resume["optimizer"])
    resume = ctx.resume
    return int(resume["walk_seed"]), int(resume["epoch"]), int(resume["step"])


def fit(module: nn.Module, data: Graph, params: DeepWalkParams, ctx: Context) -> None:
    assert isinstance(module, SkipGram)
    n = data.n_nodes
    if n < 2:
        raise ValueError(f"{data.name}: a graph of {n} node has nothing to walk")
    budget = Budget.of(ctx)
    opt = ctx.make_optimizer(module.parameters())
    base_lr = [float(g["lr"]) for g in opt.param_groups]
    walk_seed, epoch, step = _start(module, opt, ctx)
    g = torch.Generator().manual_seed(walk_seed)  # the corpus and held-out edges, every run
    walks, held = walk_corpus(data, params, g)
    counts = torch.bincount(walks[walks != PAD], minlength=n)
    objective = Objective(params, counts, ctx.device)
    while not budget.finished(epoch, step):
        done = _pass(module, opt, walks, objective, ctx, (epoch, step), base_lr)
        epoch, step = epoch + 1, done.step
        count = budget.count(epoch, step)
        state = {
            "model": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "optimizer": copy.deepcopy(opt.state_dict()),
            "epoch": epoch,
            "step": step,
            "walk_seed": walk_seed,
        }
        if done.stopped:
            if done.pairs and budget.steps is not None:
                ctx.checkpoint(count, state)
            return
        ctx.log(count, train_loss=done.loss)
        ctx.progress(count, budget.total)
        ctx.checkpoint(count, state)
    ctx.log(budget.final_step, **evaluate(module, data, held, g))


# --- evaluation -----------------------------------------------------------------------------


def node_accuracy(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of a logistic regression (on standardised vectors: their scale is the
    training's, not the regulariser's) predicting each node's label from its vector:
    leave-one-out up to ``LOO_MAX_NODES`` nodes, else 5-fold (shuffled, fixed folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, LeaveOneOut, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(labels)
    cv = LeaveOneOut() if n <= LOO_MAX_NODES else KFold(5, shuffle=True, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(np.mean(cross_val_score(clf, vectors, labels, cv=cv)))


def link_auc(vectors: Tensor, adj: Adjacency, held: Tensor, generator: torch.Generator) -> float:
    """ROC AUC of cosine similarity: held-out edges (H, 2) against H pairs of distinct
    nodes that are no edge of the whole graph ``adj``."""
    from sklearn.metrics import roc_auc_score

    negatives: list[Tensor] = []
    need = len(held)
    while need > 0:
        u = torch.randint(adj.n, (2 * need,), generator=generator)
        v = torch.randint(adj.n, (2 * need,), generator=generator)
        ok = (u != v) & ~adj.has_arc(u, v)
        pick = torch.stack([u[ok], v[ok]], 1)[:need]
        negatives.append(pick)
        need -= len(pick)
    pairs = torch.cat([held, *negatives])
    unit = nn.functional.normalize(vectors.detach().float().cpu(), dim=1)
    scores = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(-1)
    truth = np.r_[np.ones(len(held)), np.zeros(len(held))]
    return float(roc_auc_score(truth, scores.numpy()))


def evaluate(
    module: SkipGram, graph: Graph, held: Tensor, generator: torch.Generator
) -> dict[str, float]:
    """The final metrics: link-prediction AUC when edges were held out, node-classification
    accuracy when the graph has labels of at least two classes."""
    metrics: dict[str, float] = {}
    vectors = module.vectors.detach().cpu()
    if len(held):
        edges = torch.tensor(graph.edges, dtype=torch.int64)
        full = Adjacency.of(graph.n_nodes, edges, None, graph.directed)
        metrics["test_link_auc"] = link_auc(vectors, full, held, generator)
    if graph.labels is not None and len(set(graph.labels)) > 1:
        metrics["test_node_accuracy"] = node_accuracy(vectors.numpy(), np.array(graph.labels))
    return metrics


# --- capabilities ---------------------------------------------------------------------------


@torch.no_grad()
def embed(module: SkipGram, nodes: Tensor) -> dict[str, Tensor]:
    """EMBED: the vectors (m, dim) of node indices (m,)."""
    return {"vectors": module.vectors[nodes.long()].detach().clone()}


@torch.no_grad()
def neighbors(module: SkipGram, nodes: Tensor, k: int) -> dict[str, Tensor]:
    """NEIGHBORS: for node indices (m,), the k other nodes of largest cosine similarity,
    most similar first: ``nodes`` (m, k) int64 and ``similarity`` (m, k)."""
    unit = nn.functional.normalize(module.vectors.detach(), dim=1)
    sim = unit[nodes.long()] @ unit.T  # (m, n)
    sim[torch.arange(len(nodes)), nodes.long()] = -math.inf  # not itself
    top = sim.topk(min(k, unit.shape[0] - 1), dim=1)
    return {"nodes": top.indices, "similarity": top.values}


FAMILY = Family(
    name="deepwalk",
    description="DeepWalk / node2vec: node embeddings from random walks and skip-gram "
    "(transductive: a new node needs retraining on the grown graph)",
    params=DeepWalkParams,
    datasets=GRAPH_DATASETS,  # and uploaded edge lists
    capabilities={Capability.EMBED: embed, Capability.NEIGHBORS: neighbors},
    build=build,
    fit=fit,
    default_epochs=5,
    default_batch_size=256,
)
