"""Global item structure (paper Section 3.3 step 1 and Section 4.5).

A is indexed by item id 0..M (0 = padding, an all-zero row and column). Three forms:
- exact cosine between item columns of the binary train user-item matrix O (never densified), dense (M+1)^2;
- top-k: the same exact cosine, but only each row's k largest entries (ties to the lower item id), stored as
  two [M+1, k] tensors; memory O(M k), built in row chunks within a memory budget;
- cluster-item: K-means on item vectors, A_ic = cos(item i, centroid c); A[i, m] is read as A_ic[i, cluster(m)].

Both cosine forms come from one computation: the co-occurrence counts C = O^T O (exact integers, by an int8
matrix product where O is dense enough, else a sparse product), scaled as A_ij = C_ij / sqrt(C_ii) / sqrt(C_jj)
in float32. Only the upper triangle (the strip of columns >= the chunk's first row) of each row chunk is
computed; the rest of a row is its column, already seen by earlier chunks. The arithmetic does not depend on the
chunk size or the product used, so every form and every chunking gives bit-identical entries.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from globaldiff import ConfigError

MB = 2 ** 20          # similarity.memory_mb counts MiB
MAX_CHUNK = 2048      # rows per chunk at most (smaller chunks skip more of the lower triangle, larger ones
                      # rank fewer, longer rows; 1024-2048 was fastest at KuaiRec scale on 2 cores)
# bytes per strip entry on top of the fixed costs: int32 counts then float32 cosines (the strip), plus for top-k the
# strip's transposed lower part and the top-k's work; a sparse product adds its CSR result (value + column index).
_ENTRY_BYTES = {"cosine": 8, "topk": 12}
_SPARSE_ENTRY_BYTES = 8
# a dense int8 matrix product does about this many more multiply-adds per second than scipy's sparse product
# (AMD EPYC, 2 threads: ~190 G/s against ~0.25 G/s, but a sparse product skips the zeros it never meets;
# ML-1M is about the break-even point; float32: a quarter); picks the cheaper one for O's density.
_DENSE_SPEEDUP = {torch.int8: 500.0, torch.float32: 125.0}


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


def _int8_matmul(left: torch.Tensor, right_t: torch.Tensor) -> torch.Tensor:
    """left [c, N] @ right_t.T [N, W] for int8 0/1 matrices, as exact int32 counts."""
    return torch._int_mm(left, right_t.T)


@functools.lru_cache(maxsize=None)
def _has_int8_matmul() -> bool:
    try:
        probe = torch.ones(2, 3, dtype=torch.int8)
        return bool((_int8_matmul(probe, probe) == 3).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _check_dense_budget(num_items: int, memory_mb: float) -> None:
    """Refuse the dense (M+1)^2 float32 cosine matrix when it alone exceeds similarity.memory_mb."""
    need = dense_cosine_mb(num_items)
    if need > memory_mb:
        raise ConfigError(
            f"params.yaml: similarity.method = 'cosine' needs the dense (M+1)^2 float32 matrix, {need:.0f} MB for "
            f"M = {num_items} items, over similarity.memory_mb = {memory_mb:g}: use similarity.method: topk (keeps "
            f"the similarity.topk most similar items per row, O(M k) memory) or raise similarity.memory_mb")


def dense_cosine_mb(num_items: int) -> float:
    """MB (MiB) of the dense (M+1)^2 float32 cosine matrix."""
    return (num_items + 1) ** 2 * 4 / MB


class _CosineBlocks:
    """Upper-triangle strips A[s:e, s:] of the exact cosine matrix of a binary O, row chunk by row chunk."""

    def __init__(self, matrix: sp.spmatrix, backend: str = "auto"):
        o = sp.csc_matrix(matrix, dtype=np.float32, copy=True)
        o.sum_duplicates()
        o.eliminate_zeros()
        o.data[:] = 1.0                       # O is binary: C_ij counts users who have both i and j
        self.users, self.n = o.shape
        counts = np.diff(o.indptr).astype(np.float64)
        inv = np.divide(1.0, np.sqrt(counts), out=np.zeros_like(counts), where=counts > 0)
        self.inv = torch.from_numpy(inv.astype(np.float32))
        self.o = o
        self.nnz = o.nnz
        per_user = np.bincount(o.indices, minlength=self.users).astype(np.float64)
        self.sparse_ops = float((per_user ** 2).sum())          # multiply-adds of O^T O by sparse products
        self.dense_ops = float(self.users) * self.n * self.n     # and by a dense one
        # torch._int_mm returns garbage for an inner dimension of 1 (torch 2.13, CPU): int8 only from 16 users on
        self.dtype = torch.int8 if self.users >= 16 and _has_int8_matmul() else torch.float32   # of the dense O^T
        self.item_counts = torch.from_numpy(counts.astype(np.float32))
        if backend == "auto":
            backend = "dense" if self.dense_ops / _DENSE_SPEEDUP[self.dtype] <= self.sparse_ops else "sparse"
        if backend not in ("dense", "sparse"):
            raise ValueError(f"unknown similarity backend {backend!r}: expected 'auto', 'dense' or 'sparse'")
        self.backend = backend
        self._ot = None
        self._ot_csr = None

    def fixed_bytes(self) -> int:
        """Memory held across all chunks: O (sparse copies) and, for the dense backend, the dense O^T."""
        sparse = self.nnz * 8 * 2 + (self.n + self.users) * 8
        itemsize = 1 if self.dtype == torch.int8 else 4
        return sparse + (self.users * self.n * itemsize if self.backend == "dense" else 0)

    def entry_bytes(self, kind: str) -> int:
        return _ENTRY_BYTES[kind] + (_SPARSE_ENTRY_BYTES if self.backend == "sparse" else 0)

    def _prepare(self) -> None:
        if self.backend == "dense" and self._ot is None:
            ot = np.zeros((self.n, self.users), dtype=np.int8 if self.dtype == torch.int8 else np.float32)
            cols = np.repeat(np.arange(self.n), np.diff(self.o.indptr))
            ot[cols, self.o.indices] = 1
            self._ot = torch.from_numpy(ot)
        if self.backend == "sparse" and self._ot_csr is None:
            self._ot_csr = sp.csr_matrix(self.o.T)

    def counts(self, start: int, stop: int) -> torch.Tensor:
        """C[start:stop, start:] as float32 (exact integer counts)."""
        self._prepare()
        if self.backend == "dense":
            if self.dtype == torch.int8:
                block = _int8_matmul(self._ot[start:stop], self._ot[start:]).to(torch.float32)
            else:
                block = self._ot[start:stop] @ self._ot[start:].T
            if torch.equal(block.diagonal(), self.item_counts[start:stop]):   # C_ii = users of item i
                return block
            self.backend = "sparse"          # a wrong dense product (never seen above 1 user): sparse from here on
            self._ot = None
            self._prepare()
        strip = (self._ot_csr[start:stop] @ self.o[:, start:]).toarray()
        return torch.from_numpy(np.asarray(strip, dtype=np.float32))

    def strip(self, start: int, stop: int) -> torch.Tensor:
        """A[start:stop, start:] = C_ij / sqrt(C_ii) / sqrt(C_jj) (0 for an item without interactions), float32,
        [stop - start, n - start]."""
        block = self.counts(start, stop)
        block.mul_(self.inv[start:stop, None])
        block.mul_(self.inv[None, start:])
        # every entry is (C_ij / sqrt(C_ii)) / sqrt(C_jj) for i <= j, and A_ji = A_ij: mirror the diagonal block's
        # upper triangle, so that no entry depends on where the chunks start
        square = block[:, :stop - start]
        lower = torch.ones(len(square), len(square), dtype=torch.bool).tril_(-1)
        square.copy_(torch.where(lower, square.T, square))
        return block

    def chunks(self, chunk: int) -> Iterator[tuple[int, int]]:
        for start in range(0, self.n, chunk):
            yield start, min(start + chunk, self.n)


def _chunk_rows(n: int, budget: int, fixed: int, entry_bytes: int, method: str) -> int:
    """Rows per chunk so that fixed + chunk x n x entry_bytes stays within the budget (at most MAX_CHUNK)."""
    rows = (budget - fixed) // (entry_bytes * n)
    if rows < 1:
        need = (fixed + entry_bytes * n) / MB
        raise ConfigError(f"params.yaml: similarity.method = {method!r} over M = {n - 1} items needs at least "
                          f"{need:.0f} MB, over similarity.memory_mb = {budget / MB:g}: raise similarity.memory_mb"
                          + (" or use similarity.method: topk with a small similarity.topk" if method == "cosine"
                             else " or lower similarity.topk"))
    return int(min(rows, MAX_CHUNK))


def cosine_similarity(matrix: sp.spmatrix, chunk: int | None = None, memory_mb: float | None = None,
                      backend: str = "auto") -> np.ndarray:
    """A_ij = cos(O[:, i], O[:, j]) as a dense float32 (M+1) x (M+1) array, built in row chunks.

    Items without train interactions get an all-zero row and column. With `memory_mb` (MiB) it refuses
    (ConfigError) a matrix larger than the budget and sizes the chunks to what is left of it; `chunk` fixes the
    rows per chunk instead (default without either: MAX_CHUNK).
    """
    n = matrix.shape[1]
    if memory_mb is not None:
        _check_dense_budget(n - 1, memory_mb)
    blocks = _CosineBlocks(matrix, backend)
    if chunk is None:
        if memory_mb is None:
            chunk = MAX_CHUNK
        else:
            fixed = n * n * 4 + blocks.fixed_bytes()
            chunk = _chunk_rows(n, int(memory_mb * MB), fixed, blocks.entry_bytes("cosine"), "cosine")
    out = np.zeros((n, n), dtype=np.float32)
    for start, stop in blocks.chunks(chunk):
        strip = blocks.strip(start, stop).numpy()
        out[start:stop, start:] = strip
        out[stop:, start:stop] = strip[:, stop - start:].T
    return out


def _keys(values: torch.Tensor, ids: torch.Tensor | int, reverse: torch.Tensor) -> torch.Tensor:
    """Sort keys of (non-negative float32 value, item id) pairs: the value's IEEE bits (monotone for x >= 0) in the
    high 32 bits, n - 1 - id in the low 32; unique per row, so among equal values the lower id is the larger key.
    `ids`: a tensor like `values`, or the first id of consecutive columns. Zero values get -1 (below every key:
    they are dropped, and filled in at the end)."""
    low = reverse[ids] if isinstance(ids, torch.Tensor) else reverse[None, ids:ids + values.shape[1]]
    keys = values.view(torch.int32).to(torch.int64).bitwise_left_shift_(32).add_(low)
    return keys.masked_fill_(values == 0, -1)


def _strip_keys(strip: torch.Tensor, first: int, reverse: torch.Tensor, k: int) -> torch.Tensor:
    """Keys of each row's k largest positive entries of strip [r, W] (columns = ids first..first+W-1): [r, <= k].

    A float top-(k+1) finds them; a row whose k-th and (k+1)-th values are equal and positive has a tie across the
    cut, and only such rows are ranked again by their full keys (equal values go to the lower id)."""
    if strip.shape[1] <= k:
        return _keys(strip, first, reverse)
    values, ids = strip.topk(k + 1, dim=1)
    tied = (values[:, k] == values[:, k - 1]) & (values[:, k] > 0)
    keys = _keys(values[:, :k].contiguous(), ids[:, :k] + first, reverse)
    if tied.any():
        rows = tied.nonzero().squeeze(1)
        keys[rows] = _keys(strip[rows], first, reverse).topk(k, dim=1).values
    return keys


def _fill_zeros(best: torch.Tensor, reverse: torch.Tensor, rows: int = 8192) -> torch.Tensor:
    """Replace each row's -1 slots (it has fewer than k positive entries) by zeros at the lowest ids it lacks."""
    n, k = best.shape
    for start in range(0, n, rows):
        block = best[start:start + rows]
        need = (block < 0).sum(1)
        if not need.any():
            continue
        present = torch.zeros(len(block), 2 * k + 1, dtype=torch.bool)    # lacking ids all lie below 2k + 1
        ids = (n - 1) - block.bitwise_and(0xFFFFFFFF)
        ids = torch.where((block >= 0) & (ids <= 2 * k), ids, torch.full_like(ids, 2 * k))
        present.scatter_(1, ids, True)
        present[:, 2 * k] = False
        free = ~present
        take = free & (free.cumsum(1) <= need[:, None])
        r, c = take.nonzero(as_tuple=True)
        slots = (block < 0).nonzero(as_tuple=True)                       # row-major: matches (r, c) row by row
        block[slots] = reverse[c]                                         # key of value 0 at id c
        best[start:start + rows] = block.sort(dim=1, descending=True).values
    return best


def topk_similarity(matrix: sp.spmatrix, k: int, memory_mb: float = 2048, chunk: int | None = None,
                    backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Each row of the exact cosine A kept to its k largest entries: (values [M+1, k] float32, indices [M+1, k]
    int64), each row sorted by decreasing value, equal values by increasing item id (so ties keep the lower ids).

    Built in row chunks of at most `chunk` x (M+1) entries, the chunk derived from `memory_mb` (MiB) unless given;
    memory O(M k) besides. k >= M+1 keeps every entry (the dense A, row by row). The diagonal (A_ii = 1 for an item
    with train interactions) is kept like any other entry.
    """
    n = matrix.shape[1]
    if k < 1:
        raise ConfigError(f"params.yaml: similarity.topk = {k}: expected an integer >= 1")
    k = min(int(k), n)
    blocks = _CosineBlocks(matrix, backend)
    if chunk is None:
        fixed = blocks.fixed_bytes() + n * k * 8 * 4     # running keys, their merge, values and indices
        chunk = _chunk_rows(n, int(memory_mb * MB), fixed, blocks.entry_bytes("topk"), "topk")
    best = torch.full((n, k), -1, dtype=torch.int64)     # keys of each row's best positive entries so far (-1: none)
    reverse = (n - 1) - torch.arange(n, dtype=torch.int64)
    for start, stop in blocks.chunks(chunk):
        strip = blocks.strip(start, stop)                # [c, n - start]: rows start..stop-1, columns start..n-1
        keys = _strip_keys(strip, start, reverse, k)
        best[start:stop] = torch.cat([best[start:stop], keys], dim=1).topk(k, dim=1).values
        if stop < n:                                     # rows stop..n-1 are offered columns start..stop-1
            keys = _strip_keys(strip[:, stop - start:].T.contiguous(), start, reverse, k)
            best[stop:] = torch.cat([best[stop:], keys], dim=1).topk(k, dim=1).values
        del strip, keys
    best = _fill_zeros(best, reverse)
    values = best.bitwise_right_shift(32).to(torch.int32).view(torch.float32)
    indices = (n - 1) - best.bitwise_and(0xFFFFFFFF)
    return values.numpy(), indices.numpy()


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
    """Rows of A on demand, in one of three forms:

    - dense: `matrix` = A [(M+1), M+1];
    - cluster-item: `matrix` = A_ic [(M+1), K] and `assign` [M+1], the cluster of each item;
    - top-k: `values` and `indices` [(M+1), k], each row's k largest entries of A (the others are 0).
    """

    matrix: torch.Tensor | None = None    # [(M+1), M+1] or [(M+1), K]; None for the top-k form
    assign: torch.Tensor | None = None    # [M+1] cluster of each item; None unless cluster-item
    values: torch.Tensor | None = None    # [(M+1), k] top-k form only
    indices: torch.Tensor | None = None   # [(M+1), k] int64 item ids of `values`

    def __post_init__(self):
        topk = self.values is not None or self.indices is not None
        if topk and (self.values is None or self.indices is None or self.matrix is not None or self.assign is not None):
            raise ValueError("ItemSimilarity: the top-k form takes `values` and `indices` and nothing else")
        if not topk and self.matrix is None:
            raise ValueError("ItemSimilarity: give `matrix` (dense, or cluster-item with `assign`) or `values` and "
                             "`indices` (top-k)")
        if topk and self.values.shape != self.indices.shape:
            raise ValueError(f"ItemSimilarity: values {tuple(self.values.shape)} and indices "
                             f"{tuple(self.indices.shape)} differ in shape")

    @property
    def form(self) -> str:
        """'dense', 'cluster' or 'topk'."""
        if self.values is not None:
            return "topk"
        return "dense" if self.assign is None else "cluster"

    @property
    def num_items(self) -> int:
        return (self.matrix if self.matrix is not None else self.values).shape[0] - 1

    def rows(self, items: torch.Tensor) -> torch.Tensor:
        """A[items, :] as [B, M+1] (a new tensor)."""
        if self.values is not None:
            out = torch.zeros(len(items), self.num_items + 1, dtype=self.values.dtype, device=self.values.device)
            return out.scatter_(1, self.indices[items], self.values[items])
        rows = self.matrix[items]
        if self.assign is not None:
            rows = rows[:, self.assign]
            rows[:, 0] = 0.0
        return rows

    def propagate(self, y: torch.Tensor) -> torch.Tensor:
        """y A for score rows y [B, M+1], in any form, without building the dense A (column 0 is 0)."""
        if self.values is not None:
            n = self.num_items + 1
            k = self.values.shape[1]
            rows = torch.arange(n, device=self.values.device).repeat_interleave(k)
            a_t = torch.sparse_coo_tensor(torch.stack([self.indices.reshape(-1), rows]), self.values.reshape(-1),
                                          (n, n), check_invariants=True).coalesce()   # A^T: (A^T y^T)^T = y A
            out = torch.sparse.mm(a_t, y.to(self.values.dtype).T).T.contiguous()
        else:
            out = y.to(self.matrix.dtype) @ self.matrix
            if self.assign is not None:
                out = out[:, self.assign]
        out[:, 0] = 0.0
        return out

    def dense(self) -> torch.Tensor:
        """The whole A [(M+1), M+1] (for small catalogues and tests)."""
        return self.rows(torch.arange(self.num_items + 1, device=(self.matrix if self.matrix is not None
                                                                  else self.values).device))

    def to(self, device) -> "ItemSimilarity":
        def move(t):
            return None if t is None else t.to(device)
        return ItemSimilarity(move(self.matrix), move(self.assign), move(self.values), move(self.indices))

    def state_dict(self) -> dict:
        """{'matrix'} (dense), {'matrix', 'assign'} (cluster-item) or {'values', 'indices'} (top-k)."""
        if self.values is not None:
            return {"values": self.values, "indices": self.indices}
        state = {"matrix": self.matrix}
        if self.assign is not None:
            state["assign"] = self.assign
        return state

    @classmethod
    def from_state_dict(cls, state: dict, source: str = "similarity state",
                        num_items: int | None = None) -> "ItemSimilarity":
        """The similarity `state_dict()` saved (of `num_items` items, when given); other keys, types or shapes, or
        ids out of range, are a ConfigError naming `source` (the file it was read from)."""
        def bad(what: str) -> ConfigError:
            return ConfigError(f"{source}: not a saved item similarity ({what}); re-run the similarity stage")

        forms = {("matrix",): "dense", ("assign", "matrix"): "cluster", ("indices", "values"): "topk"}
        form = forms.get(tuple(sorted(map(str, state)))) if isinstance(state, dict) else None
        if form is None:
            got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise bad(f"keys {got}, expected {' or '.join(str(list(keys)) for keys in forms)}")
        for key, value in state.items():
            integer = key in ("assign", "indices")
            dtype_ok = isinstance(value, torch.Tensor) and (value.dtype == torch.int64 if integer
                                                            else value.is_floating_point())
            if not dtype_ok:
                got = f"a {value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__
                raise bad(f"'{key}' is {got}, expected a {'torch.int64' if integer else 'floating-point'} tensor")
        name = "values" if form == "topk" else "matrix"
        main = state[name]
        if main.dim() != 2 or main.shape[0] < 2 or main.shape[1] < 1 \
                or (form == "dense" and main.shape[1] != main.shape[0]):
            expected = "[M+1, M+1]" if form == "dense" else "[M+1, K]"
            raise bad(f"'{name}' of shape {tuple(main.shape)}, expected {expected} with M >= 1")
        if form != "dense":
            ids_name, shape, high = ("assign", (main.shape[0],), main.shape[1]) if form == "cluster" else \
                ("indices", tuple(main.shape), main.shape[0])
            ids = state[ids_name]
            if tuple(ids.shape) != shape or bool(((ids < 0) | (ids >= high)).any()):
                raise bad(f"'{ids_name}' of shape {tuple(ids.shape)}, expected {list(shape)} with ids in [0, {high})")
        if num_items is not None and main.shape[0] != num_items + 1:
            raise bad(f"{main.shape[0] - 1} items, the dataset has {num_items}")
        return cls(state.get("matrix"), state.get("assign"), state.get("values"), state.get("indices"))


METHODS = ("cosine", "topk", "kmeans")


def build_similarity(train: list[np.ndarray], num_items: int, method: str, clusters: int = 0,
                     last: int | None = None, seed: int = 0, topk: int = 100,
                     memory_mb: float = 2048) -> ItemSimilarity:
    """Build A from the train split with the method named in params: `cosine` (dense, refused above
    `memory_mb`), `topk` (each row's `topk` largest cosines, chunked within `memory_mb`) or `kmeans`."""
    if method not in METHODS:
        raise ConfigError(f"params.yaml: similarity.method = {method!r}: expected one of {', '.join(METHODS)}")
    if method == "cosine":
        _check_dense_budget(num_items, memory_mb)                      # before building O
    matrix = interaction_matrix(train, num_items, last=last)
    if method == "cosine":
        return ItemSimilarity(torch.from_numpy(cosine_similarity(matrix, memory_mb=memory_mb)))
    if method == "topk":
        values, indices = topk_similarity(matrix, topk, memory_mb=memory_mb)
        return ItemSimilarity(values=torch.from_numpy(values), indices=torch.from_numpy(indices))
    a_ic, assign = cluster_similarity(matrix, clusters, seed)
    return ItemSimilarity(torch.from_numpy(a_ic), torch.from_numpy(assign))
