"""Compare images by the cosine similarity of their feature vectors."""

from __future__ import annotations

from typing import Sequence

import numpy as np

BLOCK_ROWS = 65536  # gallery rows per matrix product: 320 MB of 1280-d float32 vectors
QUERY_ROWS = 1024  # queries per pass over the gallery: scores of 1024 x 65536 are 256 MB
SCORES_BYTES = 256 * 2**20  # find_near_duplicates compares this much of the score matrix at a time


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (a zero row stays zero).

    One float32 copy of the input is made and scaled in place.

    >>> normalize(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]], dtype=float32)
    """
    vectors = np.array(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("...i,...i->...", vectors, vectors))[..., None]  # no squared temporary
    if not np.isfinite(norms).all():  # a NaN or inf anywhere in a row makes its norm NaN or inf
        raise ValueError("feature vectors contain NaN or inf (rows of images that failed to load?): "
                         "use features.valid() to drop them")
    norms[norms == 0] = 1
    vectors /= norms
    return vectors


def _as_array(features) -> np.ndarray:
    """The vectors of a ``Features`` set, or the array given."""
    return np.asarray(features.vectors if hasattr(features, "vectors") else features)


def _vectors(features) -> np.ndarray:
    """The (N, D) array of a ``Features`` set or of an array."""
    vectors = _as_array(features)
    if vectors.ndim != 2:
        raise ValueError(f"expected feature vectors (N, D), got shape {vectors.shape}: "
                         "extract them with pooling='avg' or 'max'")
    return vectors


def _vectors_and_names(features, names) -> tuple[np.ndarray, list[str]]:
    """Accept a ``Features`` set (names from its sources) or an array with names."""
    vectors = _vectors(features)
    if names is None:
        if not hasattr(features, "sources"):
            raise ValueError("pass names, one per row of the feature array")
        names = features.sources
    names = list(names)
    if len(names) != len(vectors):
        raise ValueError(f"{len(names)} names for {len(vectors)} feature vectors: pass one name per row")
    return vectors, names


def _one_query(query) -> np.ndarray:
    query = _as_array(query)
    if query.ndim == 2 and len(query) == 1:
        query = query[0]
    if query.ndim != 1:
        raise ValueError(f"expected one query vector (D,), got shape {query.shape}; "
                         "for many queries use SimilarityIndex(...).search(queries)")
    return query


def _check_top(top: int | None) -> None:
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1 (or None for all), got {top}")


def _check_threshold(threshold: float | None) -> None:
    if threshold is None:
        raise ValueError("threshold is None: this model has no calibrated near-duplicate threshold "
                         "(net.spec.near_duplicate_threshold); pass a number, e.g. 0.8, and check the pairs it finds")


def cosine_similarity(queries, gallery) -> np.ndarray:
    """Cosine similarity of one query (D,) or many (Q, D) against a gallery (N, D).

    Either may be a ``Features`` set.

    Returns:
        float32 (N,) for one query, (Q, N) for many; -1 to 1 up to float32 rounding.

    >>> gallery = extract_features(load_model(include_top=False), list_images("images"))
    >>> cosine_similarity(gallery.vectors[0], gallery).shape
    (13,)
    """
    queries = _as_array(queries)
    scores = normalize(np.atleast_2d(queries)) @ normalize(_vectors(gallery)).T
    return scores[0] if queries.ndim == 1 else scores


def rank_by_similarity(query, gallery, names: Sequence[str] | None = None,
                       top: int | None = None) -> list[tuple[str, float]]:
    """The gallery ranked by cosine similarity to ``query``, best first.

    Args:
        query: one feature vector (D,) (or (1, D), or a set of one).
        gallery: a ``Features`` set, or an array (N, D) with ``names``.
        names: one name per gallery row (taken from the set's sources when omitted).
        top: how many to return; None returns all.

    >>> rank_by_similarity(gallery.vectors[2], gallery, top=2)
    [('images/chelsea.png', 1.0), ('images/motorcycle_left.png', 0.15)]
    """
    _check_top(top)
    vectors, names = _vectors_and_names(gallery, names)
    scores = cosine_similarity(_one_query(query), vectors)
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

    >>> index = SimilarityIndex(gallery)
    >>> index.search(gallery.vectors[2], top=2)
    [('images/chelsea.png', 1.0), ('images/motorcycle_left.png', 0.15)]
    """

    def __init__(self, features, names: Sequence[str] | None = None, block_rows: int = BLOCK_ROWS):
        vectors, self.names = _vectors_and_names(features, names)
        self.vectors = normalize(vectors)
        self.block_rows = block_rows

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries, top: int = 10) -> list:
        """The ``top`` most similar gallery items, best first.

        Args:
            queries: one vector (D,) or many (Q, D).
            top: results per query.

        Returns:
            For one query a list of ``(name, score)``; for many, one such list per query.
        """
        _check_top(top)
        queries = _as_array(queries)
        q = normalize(np.atleast_2d(queries))
        results = []
        for first in range(0, len(q), QUERY_ROWS):
            results += self._search(q[first:first + QUERY_ROWS], top)
        return results[0] if queries.ndim == 1 else results

    def _search(self, q: np.ndarray, top: int) -> list[list[tuple[str, float]]]:
        if not len(self):
            return [[] for _ in q]
        best_values, best_indices = [], []
        for start in range(0, len(self.vectors), self.block_rows):
            values, indices = _top_k(q @ self.vectors[start:start + self.block_rows].T, top)
            best_values.append(values)
            best_indices.append(indices + start)
        values, indices = np.hstack(best_values), np.hstack(best_indices)
        order = [np.lexsort((i, -v))[:top] for v, i in zip(values, indices)]
        return [[(self.names[i[o]], float(v[o])) for o in row] for row, v, i in zip(order, values, indices)]


def find_near_duplicates(features, threshold: float,
                         names: Sequence[str] | None = None) -> list[tuple[str, str, float]]:
    """Pairs of images whose cosine similarity is at least ``threshold``, highest first.

    Compares every pair, a block of rows at a time (about 256 MB of scores), so
    memory does not grow with N x N.

    Args:
        features: a ``Features`` set, or an array (N, D) with ``names``.
        threshold: the least cosine similarity of a pair: the model's calibrated one,
            ``net.spec.near_duplicate_threshold`` (for average-pooled features).
        names: one name per row (the set's sources when omitted).

    Returns:
        ``(name_a, name_b, score)`` with a before b in input order.

    >>> net = load_model(include_top=False)
    >>> find_near_duplicates(extract_features(net, list_images("images")), net.spec.near_duplicate_threshold)
    [('images/flower.jpg', 'images/花.jpg', 1.0), ('images/motorcycle_left.png', 'images/motorcycle_right.png', 0.89)]
    """
    _check_threshold(threshold)
    if getattr(features, "precision", "float32") != "float32":
        # int8 moves vectors by a cosine of about 0.006 on average: as much as the calibrated thresholds have to spare.
        raise ValueError(f"these features are {features.precision}: the near-duplicate thresholds are calibrated on "
                         "float32 features; extract with precision='float32', or pass features.vectors with "
                         "names=features.sources and a threshold you checked on your own photos")
    vectors, names = _vectors_and_names(features, names)
    unit = normalize(vectors)
    block_rows = max(1, SCORES_BYTES // (4 * max(len(unit), 1)))
    pairs = []
    for start in range(0, len(unit), block_rows):
        # Only pairs (a, b) with a before b: compare the block with itself and what follows.
        scores = unit[start:start + block_rows] @ unit[start:].T
        rows, cols = np.nonzero(scores >= threshold)
        pairs += [(names[start + r], names[start + c], float(scores[r, c])) for r, c in zip(rows, cols) if c > r]
    return sorted(pairs, key=lambda p: -p[2])
