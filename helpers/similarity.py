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

    >>> from helpers.similarity import normalize
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


def check_vectors(features, names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The feature vectors of a gallery and one name per vector, checked.

    What every function that takes a gallery accepts: a ``Features`` set (names
    from its sources) or an array with ``names``.

    Args:
        features: a ``Features`` set, or an array (N, D).
        names: one name per row; None takes the set's sources.

    Returns:
        The vectors as an array (N, D) (not copied), and the N names as a list.

    Raises:
        ValueError: the vectors are not (N, D) (feature maps, pooling None), or the
            names are missing or not one per row.

    >>> from helpers.similarity import check_vectors
    >>> check_vectors(np.eye(2), names=["cat", "dog"])
    (array([[1., 0.], [0., 1.]]), ['cat', 'dog'])
    """
    vectors = _vectors(features)
    if names is None:
        if not hasattr(features, "sources"):
            raise ValueError("pass names, one per row of the feature array")
        names = features.sources
    names = list(names)
    if len(names) != len(vectors):
        raise ValueError(f"{len(names)} names for {len(vectors)} feature vectors: pass one name per row")
    return vectors, names


def check_queries(queries) -> tuple[np.ndarray, bool]:
    """Query vectors as an array (Q, D), and whether one query (D,) was given.

    A search returns one list of results for one query and a list of lists for
    many: the flag says which.

    Args:
        queries: one vector (D,), many (Q, D), or a ``Features`` set.

    Raises:
        ValueError: anything else, such as feature maps (pooling None).

    >>> from helpers.similarity import check_queries
    >>> check_queries([0.6, 0.8])
    (array([[0.6, 0.8]]), True)
    """
    array = _as_array(queries)
    if array.ndim not in (1, 2):
        raise ValueError(f"expected one query vector (D,) or many (Q, D), got shape {array.shape}: "
                         "extract them with pooling='avg' or 'max'")
    return np.atleast_2d(array), array.ndim == 1


def check_top(top: int | None) -> None:
    """Refuse a number of results below 1 (None, for all, is accepted).

    >>> from helpers.similarity import check_top
    >>> check_top(0)
    Traceback (most recent call last):
    ...
    ValueError: top must be at least 1 (or None for all), got 0
    """
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1 (or None for all), got {top}")


def check_threshold(threshold: float | None) -> None:
    """Refuse a missing near-duplicate threshold with advice: the record of a model
    without a calibrated one has ``near_duplicate_threshold`` None.

    >>> from helpers.similarity import check_threshold
    >>> check_threshold(model_spec("vgg16").near_duplicate_threshold)
    Traceback (most recent call last):
    ...
    ValueError: threshold is None: this model has no calibrated near-duplicate threshold ...
    """
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
    queries, one = check_queries(queries)
    scores = normalize(queries) @ normalize(_vectors(gallery)).T
    return scores[0] if one else scores


def rank_by_similarity(query, gallery, names: Sequence[str] | None = None,
                       top: int | None = None) -> list[tuple[str, float]]:
    """The gallery ranked by cosine similarity to ``query``, best first.

    Args:
        query: one feature vector (D,) (or (1, D), or a set of one).
        gallery: a ``Features`` set, or an array (N, D) with ``names``.
        names: one name per gallery row (taken from the set's sources when omitted).
        top: how many to return; None returns all.

    >>> gallery = extract_features(load_model(include_top=False), list_images("images"))
    >>> rank_by_similarity(gallery.vectors[2], gallery, top=2)
    [('images/chelsea.png', 1.0), ('images/motorcycle_left.png', 0.15)]
    """
    check_top(top)
    vectors, names = check_vectors(gallery, names)
    query, _ = check_queries(query)
    if len(query) != 1:
        raise ValueError(f"expected one query vector (D,), got {len(query)} queries; "
                         "for many queries use SimilarityIndex(...).search(queries)")
    scores = cosine_similarity(query[0], vectors)
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

    >>> gallery = extract_features(load_model(include_top=False), list_images("images"))
    >>> index = SimilarityIndex(gallery)
    >>> index.search(gallery.vectors[2], top=2)
    [('images/chelsea.png', 1.0), ('images/motorcycle_left.png', 0.15)]
    """

    def __init__(self, features, names: Sequence[str] | None = None, block_rows: int = BLOCK_ROWS):
        vectors, self.names = check_vectors(features, names)
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
        check_top(top)
        queries, one = check_queries(queries)
        q = normalize(queries)
        results = []
        for first in range(0, len(q), QUERY_ROWS):
            results += self._search(q[first:first + QUERY_ROWS], top)
        return results[0] if one else results

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
    check_threshold(threshold)
    if getattr(features, "precision", "float32") != "float32":
        # int8 moves vectors by a cosine of about 0.006 on average: as much as the calibrated thresholds have to spare.
        raise ValueError(f"these features are {features.precision}: the near-duplicate thresholds are calibrated on "
                         "float32 features; extract with precision='float32', or pass features.vectors with "
                         "names=features.sources and a threshold you checked on your own photos")
    vectors, names = check_vectors(features, names)
    unit = normalize(vectors)
    block_rows = max(1, SCORES_BYTES // (4 * max(len(unit), 1)))
    pairs = []
    for start in range(0, len(unit), block_rows):
        # Only pairs (a, b) with a before b: compare the block with itself and what follows.
        scores = unit[start:start + block_rows] @ unit[start:].T
        rows, cols = np.nonzero(scores >= threshold)
        pairs += [(names[start + r], names[start + c], float(scores[r, c])) for r, c in zip(rows, cols) if c > r]
    return sorted(pairs, key=lambda p: -p[2])


def pair_scores(features, photo_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of every pair of rows, and whether the two show the same photo.

    One matrix product: it holds all N x N scores (1 GB of float32 at 16,000 rows).

    Args:
        features: a ``Features`` set, or an array (N, D).
        photo_ids: int array (N,), the photo each row shows (as ``edited_copies`` returns it).

    Returns:
        ``(scores, same)``: float32 and bool arrays, one value per pair (a, b) with a
        before b, in the order of ``np.triu_indices(N, k=1)``.

    >>> from helpers.similarity import pair_scores
    >>> pair_scores(np.array([[1, 0], [1, 1], [0, 1]]), photo_ids=np.array([0, 0, 1]))
    (array([0.71, 0.  , 0.71], dtype=float32), array([ True, False, False]))
    """
    unit = normalize(_vectors(features))
    a, b = np.triu_indices(len(unit), k=1)
    return (unit @ unit.T)[a, b], photo_ids[a] == photo_ids[b]


def precision_recall(scores: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of calling the pairs that score ``threshold`` or more near-duplicates.

    Args:
        scores, same: one score per pair, and whether the pair shows the same photo
            (as ``pair_scores`` returns them).
        threshold: the least score of a near-duplicate.

    Returns:
        The share of the pairs found that show the same photo (0 when none is found),
        and the share of same-photo pairs found.

    >>> from helpers.similarity import precision_recall
    >>> precision_recall(np.array([0.9, 0.8, 0.5]), np.array([True, False, False]), threshold=0.7)
    (0.5, 1.0)
    """
    found = scores >= threshold
    hits = (found & same).sum()
    return float(hits / max(found.sum(), 1)), float(hits / same.sum())
