"""SR-GNN (Wu et al., AAAI 2019, "Session-based Recommendation with Graph Neural Networks").

Each window is a session graph: its distinct items are the nodes, each pair of consecutive real items is a
directed edge, and a gated GNN (eq. 1-5) updates the node embeddings. The session vector is
s_h = W3 [s_l ; s_g] (eq. 6-7): s_l the state of the last item, s_g an attention readout over the positions;
the scores are its dot products with the item embeddings (eq. 8), trained with full-softmax cross-entropy
on the item after the window (one prediction per window, like SR-GNN's one per session prefix).

What the rest of the repo sees (GlobalDiff eq. 6): `encode` gives at position i the final GNN state of the
node of the item clicked there (padding positions exactly 0), so a repeated item has the same state at
each of its positions. h at L-1 is the last clicked item's node state (SR-GNN's s_l), and the base class's
`guidance` mean over non-padding positions is the position-weighted mean of the node states, the
unattended version of SR-GNN's s_g. The scores of `predict` come from the full session vector s_h, which
the one-state interface `item_scores(h)` cannot build, hence `session_vector` and the `predict` override.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from globaldiff.backbones.base import Backbone


def session_graph(seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The session graphs of windows [B, L]: (nodes [B, L], alias [B, L], A_in [B, L, L], A_out [B, L, L]).

    nodes[b, k] is the item of node slot k, slots numbered in order of first occurrence, unused slots 0.
    alias[b, p] is the slot of position p's item (0 at padding positions, which are masked out later).
    As in SR-GNN's code, an edge u -> v counts once however often it occurs (self-loops kept); row i of
    A_out spreads 1 over i's successors (1 / out-degree), row i of A_in over its predecessors
    (1 / in-degree); rows of nodes without such neighbours, and of unused slots, are 0.
    """
    batch, length = seqs.shape
    real = seqs != 0
    pos = torch.arange(length, device=seqs.device)
    same = seqs[:, :, None] == seqs[:, None, :]                                   # [B, L, L]
    first = torch.where(same, pos, length).min(-1).values                         # first position of p's item
    is_first = real & (first == pos)
    slot = is_first.long().cumsum(1) - 1                                          # node slot of each first occurrence
    alias = torch.where(real, slot.gather(1, first), torch.zeros_like(slot))
    # non-first positions are scattered into a spare column L, dropped afterwards
    nodes = torch.zeros(batch, length + 1, dtype=seqs.dtype, device=seqs.device)
    nodes.scatter_(1, torch.where(is_first, slot, length), seqs)
    nodes = nodes[:, :length]

    onehot = F.one_hot(alias, length).float() * real[..., None]                   # [B, L (position), L (slot)]
    step = (real[:, :-1] & real[:, 1:])[..., None]                                # consecutive real items
    edges = ((onehot[:, :-1] * step).transpose(1, 2) @ onehot[:, 1:] > 0).float()  # edges[u, v]: u -> v
    a_out = edges / edges.sum(2, keepdim=True).clamp(min=1.0)
    incoming = edges.transpose(1, 2)
    a_in = incoming / incoming.sum(2, keepdim=True).clamp(min=1.0)
    return nodes, alias, a_in, a_out


class GatedGraphLayer(nn.Module):
    """One propagation step of SR-GNN, eq. (1)-(5), on node states v [B, n, d]:

    a = [A_in (v W_in + b_in) + b_iah ; A_out (v W_out + b_out) + b_oah]        (1)
    z = sigmoid(W_z a + U_z v),  r = sigmoid(W_r a + U_r v)                       (2, 3)
    v~ = tanh(W_o a + U_o (r * v)),  v' = (1 - z) * v + z * v~                    (4, 5)

    The biases inside the products are the edge layers' (as in the authors' code), the ones outside are
    eq. (1)'s b.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.edge_in, self.edge_out = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.bias_in, self.bias_out = nn.Parameter(torch.zeros(hidden)), nn.Parameter(torch.zeros(hidden))
        self.gates_a = nn.Linear(2 * hidden, 3 * hidden)            # W_z, W_r, W_o (one matrix, split below)
        self.gates_v = nn.Linear(hidden, 2 * hidden, bias=False)    # U_z, U_r
        self.cand_v = nn.Linear(hidden, hidden, bias=False)         # U_o

    def forward(self, v: torch.Tensor, a_in: torch.Tensor, a_out: torch.Tensor) -> torch.Tensor:
        a = torch.cat([a_in @ self.edge_in(v) + self.bias_in, a_out @ self.edge_out(v) + self.bias_out], -1)
        wz, wr, wo = self.gates_a(a).chunk(3, -1)
        uz, ur = self.gates_v(v).chunk(2, -1)
        z, r = torch.sigmoid(wz + uz), torch.sigmoid(wr + ur)
        cand = torch.tanh(wo + self.cand_v(r * v))
        return (1 - z) * v + z * cand


class SRGNN(Backbone):
    causal = True

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, steps: int = 1, dropout: float = 0.0):
        super().__init__(num_items, max_len, hidden)
        if steps < 1:
            raise ValueError(f"SRGNN steps {steps}: expected at least 1")
        self.steps = steps
        self.items = nn.Embedding(num_items + 2, hidden, padding_idx=0)
        self.drop = nn.Dropout(dropout)      # on the node embeddings; SR-GNN itself has none (default 0)
        # one set of weights shared by all steps, as GGNN unrolls one recurrent cell
        self.gnn = GatedGraphLayer(hidden)
        self.att_last = nn.Linear(hidden, hidden)            # W1 (its bias is eq. 6's c)
        self.att_pos = nn.Linear(hidden, hidden, bias=False)  # W2
        self.att_q = nn.Linear(hidden, 1, bias=False)        # q
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)  # W3
        # SR-GNN's code draws every parameter from uniform(-1/sqrt(d), 1/sqrt(d)); kept because its lr and
        # L2 defaults were tuned with it, and the GNN gates are not the transformers the 0.02 init is for
        bound = hidden ** -0.5
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        nodes, alias, a_in, a_out = session_graph(seqs)
        v = self.drop(self.items(nodes))
        a_in, a_out = a_in.to(v.dtype), a_out.to(v.dtype)
        for _ in range(self.steps):
            v = self.gnn(v, a_in, a_out)
        h = v.gather(1, alias[..., None].expand(-1, -1, v.shape[-1]))
        return h.masked_fill((seqs == 0)[..., None], 0.0)

    def session_vector(self, seqs: torch.Tensor) -> torch.Tensor:
        """s_h = W3 [s_l ; s_g] [B, d] of windows [B, L] (eq. 6-7); the windows are right-aligned, so the
        last position holds the last item (s_l; 0 for an all-padding window)."""
        h = self.encode(seqs)
        last = h[:, -1]
        alpha = self.att_q(torch.sigmoid(self.att_last(last)[:, None] + self.att_pos(h)))  # [B, L, 1]
        # real positions only (h is already 0 at padding; the mask says so rather than relying on it)
        alpha = alpha.masked_fill((seqs == 0)[..., None], 0.0)
        return self.combine(torch.cat([last, (alpha * h).sum(1)], -1))

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight[: self.num_items + 1].T

    def predict(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # the guidance stays the base class's per-position states; encoding twice is cheap at L = 10
        seqs = self.next_item_input(windows)
        target = torch.full((len(seqs),), seqs.shape[1] - 1, device=seqs.device, dtype=torch.long)
        h_target, h_mean = self.guidance(seqs, target)
        return self.item_scores(self.session_vector(seqs)), h_target, h_mean

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = windows[:, :-1], windows[:, -1]
        keep = (targets != 0) & (inputs != 0).any(1)
        if not keep.any():      # nothing to predict: a zero that still reaches the parameters
            return self.items.weight.sum() * 0.0
        logits = self.item_scores(self.session_vector(inputs[keep]))
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, targets[keep])

    def config(self) -> dict:
        return {**super().config(), "steps": self.steps}
