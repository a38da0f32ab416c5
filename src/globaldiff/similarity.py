"""Global item structure (paper Section 3.3 step 1 and Section 4.5).

A is indexed by item id 0..M (0 = padding, an all-zero row and column). Two kinds:
- exact cosine between item columns of the binary train user-item matrix O (never densified);
- cluster-item: K-means on item vectors, A_ic = cos(item i, centroid c); A[i, m] is read as A_ic[i, cluster(m)].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from . import ConfigError


def interaction_matrix(train: list[np.ndarray], num_items: int, last: int | None = None) -> sp.csr_matrix:
    """Binary user x item matrix O (N x (M+1)) of the train sequences; `last` keeps each user's last items only."""
    rows, cols = [], []
    for user, seq in enumerate(train):
        items = seq[-last:] if last else seq
        rows.append(np.full(len(items), user, dtype=np.int64))
        cols.append(np.asarray(items, dtype=np.int64))
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    data = np.ones(len(rows_a), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows_a, cols_a)), shape=(len(train), num_items + 1))
    matrix.data[:] = 1.0  # repeated (user, item) pairs count once
    return matrix


def _unit_columns(matrix: sp.spmatrix) -> sp.csc_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csc_matrix(matrix @ sp.diags(inv.astype(np.float32)))


def cosine_similarity(matrix: sp.spmatrix, chunk: int = 2048) -> np.ndarray:
    """A_ij = cos(O[:, i], O[:, j]) as a dense float32 (M+1) x (M+1) array, built in column chunks.

    Items without train interactions get an all-zero row and column.
    """
    unit = _unit_columns(matrix)
    unit_t = sp.csr_matrix(unit.T)
    n = unit.shape[1]
    out = np.zeros((n, n), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        out[:, start:stop] = (unit_t @ unit[:, start:stop]).toarray()
    return out


def cluster_similarity(matrix: sp.spmatrix, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K-means cluster-item similarity (Section 4.5): returns (A_ic [(M+1) x K] float32, assign [M+1] int64).

    Items are the L2-normalised columns of O; A_ic = cos(item i, centroid c); assign[m] = cluster of item m.
    """
    from sklearn.cluster import KMeans

    items = matrix.shape[1] - 1
    if not 1 <= clusters <= items:
        raise ConfigError(f"params.yaml: similarity.clusters = {clusters}: expected 1 <= K <= number of items ({items})")
    unit = sp.csr_matrix(_unit_columns(matrix).T)  # (M+1) x N, rows = items
    km = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(unit[1:])
    centroids = km.cluster_centers_.astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1)
    centroids /= np.where(norms > 0, norms, 1.0)[:, None]
    a_ic = np.zeros((items + 1, clusters), dtype=np.float32)
    a_ic[1:] = unit[1:] @ centroids.T
    assign = np.zeros(items + 1, dtype=np.int64)
    assign[1:] = km.labels_
    return a_ic, assign


@dataclass
class ItemSimilarity:
    """Rows of A on demand: dense (M+1)^2, or cluster-item (M+1) x K with an item -> cluster map."""

    matrix: torch.Tensor  # [(M+1), M+1] or [(M+1), K]
    assign: torch.Tensor | None = None  # [M+1] cluster of each item; None for the dense form

    @property
    def num_items(self) -> int:
        return self.matrix.shape[0] - 1

    def rows(self, items: torch.Tensor) -> torch.Tensor:
        """A[items, :] as [B, M+1]."""
        rows = self.matrix[items]
        if self.assign is not None:
            rows = rows[:, self.assign]
            rows[:, 0] = 0.0
        return rows

    def to(self, device) -> "ItemSimilarity":
        assign = None if self.assign is None else self.assign.to(device)
        return ItemSimilarity(self.matrix.to(device), assign)

    def state_dict(self) -> dict:
        state = {"matrix": self.matrix}
        if self.assign is not None:
            state["assign"] = self.assign
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "ItemSimilarity":
        return cls(state["matrix"], state.get("assign"))


def build_similarity(train: list[np.ndarray], num_items: int, method: str, clusters: int = 0,
                     last: int | None = None, seed: int = 0) -> ItemSimilarity:
    """Build A from the train split with the method named in params (`cosine` or `kmeans`)."""
    matrix = interaction_matrix(train, num_items, last=last)
    if method == "cosine":
        return ItemSimilarity(torch.from_numpy(cosine_similarity(matrix)))
    if method == "kmeans":
        a_ic, assign = cluster_similarity(matrix, clusters, seed)
        return ItemSimilarity(torch.from_numpy(a_ic), torch.from_numpy(assign))
    raise ConfigError(f"params.yaml: similarity.method = {method!r}: expected 'cosine' or 'kmeans'")
