"""Compare images by the cosine similarity of their feature vectors."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .models import near_duplicate_threshold

BLOCK_ROWS = 65536  # gallery rows per matrix product: 320 MB of 1280-d float32 vectors


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (a zero row stays zero).

    >>> normalize(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]], dtype=float32)
    """
    vectors = np.array(vectors, dtype=np.float32)  # one copy, then scaled in place
    _check_finite(vectors)
    norms = np.sqrt(np.einsum("...i,...i->...", vectors, vectors))[..., None]  # no squared temporary
    norms[norms == 0] = 1
    vectors /= norms
    return vectors


def _check_finite(vectors: np.ndarray) -> None:
    if not np.isfinite(vectors).all():
        raise ValueError("feature vectors contain NaN or inf (rows of images that failed to load?): "
                         "use features.valid() to drop them")


def _vectors_and_names(features, names):
    """Accept a ``Features`` set (names from its sources) or an array with names."""
    if hasattr(features, "vectors"):
        return features.vectors, list(names) if names is not None else features.sources
    if names is None:
        raise ValueError("pass names, one per row of the feature array")
    return np.asarray(features), list(names)


def cosine_similarity(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity of one query (D,) or many (Q, D) against a gallery (N, D).

    Returns:
        float32 (N,) for one query, (Q, N) for many, values in -1..1.

    >>> cosine_similarity(features[0], features).shape
    (12,)
    """
    queries = np.asarray(queries)
    scores = normalize(np.atleast_2d(queries)) @ normalize(gallery).T
    return scores[0] if queries.ndim == 1 else scores


def rank_by_similarity(query: np.ndarray, gallery, names: Sequence[str] | None = None,
                       top: int | None = None) -> list[tuple[str, float]]:
    """The gallery ranked by cosine similarity to ``query``, best first.

    Args:
        query: one feature vector (D,).
        gallery: a ``Features`` set, or an array (N, D) with ``names``.
        names: one name per gallery row (taken from the set's sources when omitted).
        top: how many to return; None returns all.

    >>> rank_by_similarity(query, gallery, top=3)
    [('images/chelsea.png', 0.87), ...]
    """
    vectors, names = _vectors_and_names(gallery, names)
    scores = cosine_similarity(query, vectors)
    order = np.argsort(-scores, kind="stable")[:top]
    return [(names[i], float(scores[i])) for i in order]


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` (Q, B), the k best (values, column indices), best first;
    equal scores in column order, as a stable sort of the whole row would give."""
    if k >= scores.shape[1]:
        idx = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(scores, idx, axis=1), idx
    kth = np.partition(scores, scores.shape[1] - k, axis=1)[:, -k]
    values, indices = np.empty((len(scores), k), scores.dtype), np.empty((len(scores), k), np.int64)
    for r, row in enumerate(scores):
        candidates = np.flatnonzero(row >= kth[r])  # ties at the k-th value included
        best = candidates[np.lexsort((candidates, -row[candidates]))[:k]]
        values[r], indices[r] = row[best], best
    return values, indices


class SimilarityIndex:
    """Exact top-k cosine search over a large gallery, block by block.

    The gallery is normalised once at build time (one float32 copy). A search
    multiplies the queries with one block of gallery rows at a time and keeps
    only each block's top k, so memory is (queries x block), never N x N:
    a million 1280-d vectors (about 5 GB) fit on a 24 GB machine.

    >>> index = SimilarityIndex(gallery.vectors, gallery.sources)
    >>> index.search(query, top=5)
    [('images/chelsea.png', 0.87), ...]
    """

    def __init__(self, features, names: Sequence[str] | None = None, block_rows: int = BLOCK_ROWS):
        vectors, self.names = _vectors_and_names(features, names)
        if vectors.ndim != 2 or len(vectors) != len(self.names):
            raise ValueError(f"expected an (N, D) array and N names, got {vectors.shape} and {len(self.names)}")
        self.vectors = normalize(vectors)
        self.block_rows = block_rows

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, top: int = 10) -> list:
        """The ``top`` most similar gallery items, best first.

        Args:
            queries: one vector (D,) or many (Q, D).
            top: results per query.

        Returns:
            For one query a list of ``(name, score)``; for many, one such list per query.
        """
        queries = np.asarray(queries)
        q = normalize(np.atleast_2d(queries))
        best_values, best_indices = [], []
        for start in range(0, len(self.vectors), self.block_rows):
            values, indices = _top_k(q @ self.vectors[start:start + self.block_rows].T, top)
            best_values.append(values)
            best_indices.append(indices + start)
        values, indices = np.hstack(best_values), np.hstack(best_indices)
        order = [np.lexsort((i, -v))[:top] for v, i in zip(values, indices)]
        results = [[(self.names[i[o]], float(v[o])) for o in row]
                   for row, v, i in zip(order, values, indices)]
        return results[0] if queries.ndim == 1 else results


def find_near_duplicates(features, names: Sequence[str] | None = None, threshold: float | None = None,
                         block_rows: int = 4096) -> list[tuple[str, str, float]]:
    """Pairs of images whose cosine similarity is at least ``threshold``, highest first.

    Args:
        features: a ``Features`` set (average-pooled), or an array (N, D) with ``names``.
        names: one name per row (the set's sources when omitted).
        threshold: None uses the one calibrated for the set's model
            (``near_duplicate_threshold``); required for a plain array.
        block_rows: rows compared at a time (memory is block_rows x N).

    Returns:
        ``(name_a, name_b, score)`` with a before b in input order.

    >>> find_near_duplicates(extract_features(net, list_images("images")).valid())
    [('images/motorcycle_left.png', 'images/motorcycle_right.png', 0.93)]
    """
    if threshold is None:
        if not hasattr(features, "model"):
            raise ValueError("pass threshold=, or a Features set whose model has a calibrated threshold")
        if features.pooling != "avg":
            raise ValueError(f"the calibrated thresholds are for pooling='avg', not {features.pooling!r}: "
                             "pass threshold=")
        threshold = near_duplicate_threshold(features.model)
    vectors, names = _vectors_and_names(features, names)
    unit = normalize(vectors)
    pairs = []
    for start in range(0, len(unit), block_rows):
        # Only pairs (a, b) with a before b: compare the block with itself and what follows.
        scores = unit[start:start + block_rows] @ unit[start:].T
        rows, cols = np.nonzero(np.triu(scores >= threshold, k=1))
        pairs += [(names[start + r], names[start + c], float(scores[r, c])) for r, c in zip(rows, cols)]
    return sorted(pairs, key=lambda p: -p[2])
