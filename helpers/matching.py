"""Check a near-duplicate by geometry: the same local patterns, in the same places up to a crop, a turn and a resize.

Global feature vectors miss heavily edited copies (a tight crop, a tilt, a caption);
local features (OpenCV's SIFT) matched between two photos and fitted by one
similarity transform (shift, turn, uniform scale) find them: a copy shares dozens of
points that move together, two different photos a handful at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .images import ImageLoadError, ImageSource, load_image
from .similarity import SimilarityIndex, check_threshold, check_vectors, find_near_duplicates, normalize

MAX_SIDE = 400  # each photo is resized so that its longer side has this many pixels
MAX_POINTS = 1000  # keypoints kept per photo, the strongest first
RATIO = 0.8  # Lowe's ratio test: a match must be this much closer than the second best
PIXELS = 6.0  # RANSAC: a point within this many pixels (at MAX_SIDE) of where the transform puts it is an inlier
MIN_INLIERS = 15  # inliers that make a pair a near-duplicate (benchmarks/heavy_duplicates.py, 500 dev photos)
MIN_SPREAD = 0.1  # and the inliers' bounding box covers at least this share of the smaller photo
VOTE_POINTS = 150  # descriptors each photo votes with in vote_candidates
VOTE_NEIGHBOURS = 10  # nearest descriptors each of them finds
CANDIDATES = 10  # partners proposed per photo, by votes and by cosine, in find_edited_copies
METHODS = ("sift", "orb")  # SIFT: surer matches; ORB: binary descriptors, faster to compute and match


@dataclass(frozen=True)
class LocalFeatures:
    """The keypoints of one photo, resized so that its longer side is ``max_side``.

    Attributes:
        points: float32 (n, 2), the keypoints' (x, y) in the resized photo's pixels, the strongest first.
        descriptors: one per keypoint: float32 (n, 128) for SIFT, uint8 (n, 32) for ORB.
        size: (width, height) of the resized photo.
    """

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.points)


def local_features(source: ImageSource, max_side: int = MAX_SIDE, max_points: int = MAX_POINTS,
                   method: str = "sift") -> LocalFeatures:
    """Keypoints of a photo in grayscale, resized (up or down) so its longer side is ``max_side``.

    Args:
        source: anything ``load_image`` accepts.
        max_side: the longer side, in pixels, the photo is resized to.
        max_points: keep at most this many keypoints, the strongest.
        method: "sift" or "orb" (``METHODS``).

    Raises:
        ImageLoadError: the file is missing, not an image or broken (the message names it).

    >>> from helpers.matching import local_features
    >>> features = local_features("images/coffee.png")
    >>> features.size, features.descriptors.shape[1]
    ((400, 267), 128)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    pixels = load_image(source, dtype="uint8")
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    factor = max_side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    detector = cv2.SIFT_create(nfeatures=max_points) if method == "sift" else cv2.ORB_create(nfeatures=max_points)
    keypoints, descriptors = detector.detectAndCompute(gray, None)
    if descriptors is None:  # a flat picture has no keypoints
        empty = np.zeros((0, 128), np.float32) if method == "sift" else np.zeros((0, 32), np.uint8)
        return LocalFeatures(np.zeros((0, 2), np.float32), empty, size)
    order = np.argsort([-k.response for k in keypoints], kind="stable")[:max_points]  # the strongest first
    points = np.array([keypoints[i].pt for i in order], np.float32).reshape(-1, 2)
    return LocalFeatures(points, descriptors[order], size)


def count_inliers(a: LocalFeatures, b: LocalFeatures, ratio: float = RATIO, pixels: float = PIXELS,
                  min_spread: float = MIN_SPREAD) -> int:
    """How many keypoint matches of two photos one similarity transform explains.

    Matches pass Lowe's ratio test, then RANSAC fits a shift, turn and uniform scale.
    Inliers huddled in a small part of either photo (the same caption text on two
    different photos) count as none.

    Args:
        a, b: from ``local_features``.
        ratio: the ratio test's bound (0-1): lower keeps fewer, surer matches.
        pixels: the RANSAC inlier distance, in the resized photos' pixels.
        min_spread: the least share of the smaller photo's area the inliers' bounding
            box must cover, in both photos.

    Returns:
        The number of inliers; 0 when there are too few matches to fit a transform.

    >>> from helpers import edit
    >>> from helpers.matching import count_inliers, local_features
    >>> photo = local_features("images/coffee.png")
    >>> count_inliers(photo, local_features(edit("images/coffee.png", rotate=8, keep=0.6))) > 50
    True
    """
    if len(a) < 2 or len(b) < 2:
        return 0
    norm = cv2.NORM_HAMMING if a.descriptors.dtype == np.uint8 else cv2.NORM_L2  # ORB's are bits
    pairs = cv2.BFMatcher(norm).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < 3:
        return 0
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=pixels)
    if mask is None:
        return 0
    inliers = mask.ravel().astype(bool)
    if _spread(src[inliers], a.size, b.size) < min_spread or _spread(dst[inliers], a.size, b.size) < min_spread:
        return 0
    return int(inliers.sum())


def _spread(points: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]) -> float:
    """The area of the points' bounding box, as a share of the smaller of two photos."""
    if len(points) < 2:
        return 0.0
    extent = points.max(axis=0) - points.min(axis=0)
    return float(extent[0] * extent[1] / min(size_a[0] * size_a[1], size_b[0] * size_b[1]))


def vote_candidates(features: Sequence[LocalFeatures], points: int = VOTE_POINTS, neighbours: int = VOTE_NEIGHBOURS,
                    top: int = CANDIDATES) -> set[tuple[int, int]]:
    """Pairs of photos that share keypoints: each photo's ``top`` most voted partners.

    Each photo's ``points`` strongest descriptors look up their ``neighbours`` nearest
    among every photo's (OpenCV's FLANN k-d trees) and vote for the photos they find.
    Memory holds the descriptors and the votes cast, never a score for every pair.

    Args:
        features: ``local_features`` of each photo (SIFT).
        points: descriptors each photo votes with, the strongest.
        neighbours: nearest descriptors each looks up.
        top: partners kept per photo, the most voted (two votes at least).

    Returns:
        Pairs (i, j) of indices into ``features``, i < j.

    >>> from helpers import edit
    >>> from helpers.matching import local_features, vote_candidates
    >>> photos = [local_features(p) for p in ["images/coffee.png", "images/chelsea.png"]]
    >>> (0, 2) in vote_candidates(photos + [local_features(edit("images/coffee.png", keep=0.6))], top=1)
    True
    """
    counts = [min(len(f), points) for f in features]
    if sum(counts) <= neighbours:
        return set()
    descriptors = np.concatenate([f.descriptors[:points] for f in features]).astype(np.float32)
    owner = np.repeat(np.arange(len(features)), counts)
    index = cv2.flann_Index(descriptors, {"algorithm": 1, "trees": 4})  # 1: k-d trees
    found, _ = index.knnSearch(descriptors, neighbours + 1, params={"checks": 64})
    voter, target = np.repeat(owner, neighbours + 1), owner[found.ravel()]
    keep = voter != target
    first, second = np.minimum(voter, target)[keep], np.maximum(voter, target)[keep]
    pairs, votes = np.unique(np.stack([first, second], axis=1), axis=0, return_counts=True)
    pairs, votes = pairs[votes > 1], votes[votes > 1]
    # Each pair from both sides, sorted by photo and then by votes: the first ``top`` rows of each photo.
    photo, partner = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((-np.concatenate([votes, votes]), photo))
    photo, partner = photo[order], partner[order]
    rank = np.arange(len(photo)) - np.searchsorted(photo, photo)
    best = rank < top
    return {(int(a), int(b)) for a, b in zip(np.minimum(photo, partner)[best], np.maximum(photo, partner)[best])}


def nearest_candidates(unit: np.ndarray, top: int = CANDIDATES) -> set[tuple[int, int]]:
    """Pairs of each row with its ``top`` most similar other rows, by inner product (cosine of unit rows).

    >>> from helpers.matching import nearest_candidates
    >>> sorted(nearest_candidates(np.array([[1, 0], [0.9, 0.1], [0, 1]]), top=1))
    [(0, 1), (1, 2)]
    """
    if len(unit) < 2:
        return set()
    # SimilarityIndex's blockwise top k, with row numbers for names; each row also finds itself.
    found = SimilarityIndex(unit, [str(i) for i in range(len(unit))]).search(unit, top=top + 1)
    nearest = [[int(name) for name, _ in row if int(name) != i][:top] for i, row in enumerate(found)]
    return {(min(i, j), max(i, j)) for i, row in enumerate(nearest) for j in row}


def find_edited_copies(features, threshold: float | None, floor: float | None, names: Sequence[str] | None = None,
                       photos: Sequence[ImageSource] | None = None,
                       min_inliers: int = MIN_INLIERS) -> list[tuple[str, str, float]]:
    """Near-duplicates that survive heavy edits: close feature vectors, or keypoints that agree.

    A pair is reported when its cosine similarity is at least ``threshold`` (what
    ``find_near_duplicates`` reports), or when it is a candidate, its cosine at least
    ``floor``, and ``count_inliers`` finds ``min_inliers`` keypoints that one shift,
    turn and resize explain. Candidates: each photo's ``CANDIDATES`` nearest by cosine
    and ``CANDIDATES`` most voted by shared keypoints (``vote_candidates``). A tight
    crop, a tilt, grayscale, a caption or a small copy moves the vector far, but not
    the keypoints (benchmarks/heavy_duplicates.py: figures in benchmarks/README.md).

    Args:
        features: a ``Features`` set of average-pooled float32 vectors (``valid()``: the
            photos that loaded), or an array (N, D) with ``names``.
        threshold: ``net.spec.near_duplicate_threshold``.
        floor: the least cosine of a pair the keypoints may confirm,
            ``net.spec.near_duplicate_floor``: below it, different photos that share a
            caption's text would pass.
        names: one name per row (the set's sources when omitted).
        photos: the photos to find keypoints in, one per row; None reads the names
            as files. Pass the images when the set was made from PIL images or arrays,
            or when the names are not paths.
        min_inliers: the least number of agreeing keypoints.

    Returns:
        ``(source_a, source_b, cosine)``, highest first, a before b in input order: the
        format of ``find_near_duplicates``. A photo that cannot be read again gets no
        keypoints: only its cosine pairs are reported.

    Raises:
        ValueError: no ``photos`` and a name that is not a file (in-memory photos are
            named "<Image>"), or not one photo per row.

    >>> import tempfile
    >>> copy = f"{tempfile.mkdtemp()}/coffee_copy.jpg"
    >>> edit("images/coffee.png", keep=0.55, rotate=7, grayscale=True).save(copy)  # tight, tilted, gray
    >>> net = load_model(include_top=False)
    >>> features = extract_features(net, ["images/coffee.png", "images/chelsea.png", copy])
    >>> find_near_duplicates(features, net.spec.near_duplicate_threshold)
    []
    >>> [(a, b.endswith("coffee_copy.jpg")) for a, b, _ in
    ...  find_edited_copies(features, net.spec.near_duplicate_threshold, net.spec.near_duplicate_floor)]
    [('images/coffee.png', True)]
    """
    check_threshold(threshold)
    if floor is None:
        raise ValueError("floor is None: this model has no calibrated near_duplicate_floor; pass a cosine, "
                         "e.g. 0.3, and check the pairs it finds")
    vectors, names = check_vectors(features, names)
    if photos is not None and len(photos) != len(names):
        raise ValueError(f"{len(photos)} photos for {len(names)} feature vectors: pass one photo per row")
    if photos is None and not all(Path(name).is_file() for name in names):
        missing = next(name for name in names if not Path(name).is_file())
        raise ValueError(f"{missing}: no such file to find keypoints in; pass photos=, one photo per row "
                         "(the files, PIL images or arrays the features were made from)")
    # Pairs of row numbers, not names: two photos made from arrays have the same name.
    rows = [str(i) for i in range(len(names))]
    pairs = [(int(a), int(b), score) for a, b, score in find_near_duplicates(features, threshold, rows)]
    found = {(a, b) for a, b, _ in pairs}  # these need no keypoints
    unit, local = normalize(vectors), []
    for source in names if photos is None else photos:
        try:
            local.append(local_features(source))
        except ImageLoadError:
            local.append(LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), (1, 1)))
    for i, j in sorted(nearest_candidates(unit) | vote_candidates(local)):
        cosine = float(unit[i] @ unit[j])
        if (i, j) not in found and cosine >= floor and count_inliers(local[i], local[j]) >= min_inliers:
            pairs.append((i, j, cosine))
    return [(names[i], names[j], score) for i, j, score in sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))]
