"""Near-duplicate finding against heavy edits: global cosine alone, and cosine candidates checked by geometry.

    python benchmarks/heavy_duplicates.py [--model NAME] [--n N] [--seed S] [--method sift|orb]
        [--floor-for-verified F] [--only-shipped]

Every dev-set photo gets its two light copies (``helpers.images.NEAR_DUPLICATE_EDITS``)
and one heavy copy per kind (``helpers.images.heavy_copies``: a 55-65% crop anywhere,
a 3-10 degree tilt, grayscale, a caption bar, a watermark, a 25-50% copy, a mix),
each drawn afresh from a seeded generator. Precision counts every pair of the whole
set (different-photo pairs include edited copies of different photos); recall is
given per kind, over the pairs of a photo and its copy of that kind.

Methods: (a) the global cosine of average-pooled features (fastest backend) at the
registry threshold and at the best single threshold; (b) two stages: pairs with a
cosine of at least a floor (optionally only each photo's top k neighbours) are
checked with ``helpers.matching`` (local features, ratio test, RANSAC similarity
transform), and a pair is accepted if its cosine reaches the registry threshold or
it is verified. Then (c) the cosine floor of the verified pairs (the registry's
``near_duplicate_floor``), swept over COSINE_FLOORS_SWEEP at the shipped ``MIN_INLIERS``,
and last the shipped ``helpers.matching.find_edited_copies`` called as a user calls it,
at --floor-for-verified (default: the registry's floor; for a model without one, the
floor the sweep chooses: the highest at which precision is at least TARGET_PRECISION and
every kind's recall at least TARGET_RECALL + MARGIN; the registry's floors were chosen so).
Local features and inlier counts (per pair, whatever the model) are cached in --cache (npz).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from helpers import DEFAULT_MODEL, extract_features, list_images, load_model, model_spec  # noqa: E402
from helpers.images import HEAVY_EDIT_KINDS, heavy_copies  # noqa: E402
from helpers.matching import CANDIDATES, LocalFeatures, count_inliers, find_edited_copies, local_features  # noqa: E402
from helpers.matching import MIN_INLIERS as SHIPPED_MIN_INLIERS  # noqa: E402
from helpers.similarity import pair_scores  # noqa: E402

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-dev"
MIN_INLIERS = (8, 10, 12, 15, 20, 25, 30)
COSINE_FLOORS = (0.2, 0.25, 0.3, 0.35, 0.4)
COSINE_FLOORS_SWEEP = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45)
TARGET_PRECISION = 0.99  # a floor for a model without one: precision over all pairs at least this
TARGET_RECALL = 0.9  # and recall of every kind at least this
MARGIN = 0.02  # the highest floor that keeps this much recall to spare on the weakest kind


def cached_inliers(local: list[LocalFeatures], a: np.ndarray, b: np.ndarray, todo: np.ndarray,
                   path: Path) -> np.ndarray:
    """``count_inliers`` of the pairs ``todo`` (indices into ``a``, ``b``); pairs counted before (for
    any model: the count depends on the local features only) are read from ``path``."""
    known, counts = np.zeros(0, np.int64), np.zeros(0, int)
    if path.exists():
        with np.load(path) as data:
            known, counts = data["pairs"], data["inliers"]
    missing = np.setdiff1d(todo, known)
    if len(missing):
        start = time.perf_counter()
        new = np.array([count_inliers(local[a[p]], local[b[p]]) for p in missing], dtype=int)
        print(f"verification: {len(missing)} pairs not counted before, "
              f"{(time.perf_counter() - start) / len(missing) * 1000:.2f} ms per pair")
        known, counts = np.concatenate([known, missing]), np.concatenate([counts, new])
        order = np.argsort(known)
        known, counts = known[order], counts[order]
        np.savez(path, pairs=known, inliers=counts)
    return counts[np.searchsorted(known, todo)]


def cached_local_features(sources, path: Path, method: str, max_side: int) -> list[LocalFeatures]:
    """``local_features`` of every source, from ``path`` when computed before."""
    if path.exists():
        data = dict(np.load(path))  # read each array once: indexing an NpzFile reads it again
        bounds = np.concatenate([[0], np.cumsum(data["counts"])])
        return [LocalFeatures(data["points"][s:e], data["descriptors"][s:e], tuple(size))
                for s, e, size in zip(bounds[:-1], bounds[1:], data["sizes"])]
    start = time.perf_counter()
    features = [local_features(s, max_side=max_side, method=method) for s in sources]
    print(f"local features ({method}, {max_side} px): {(time.perf_counter() - start) / len(sources) * 1000:.1f} ms "
          f"per image, {np.mean([len(f) for f in features]):.0f} keypoints on average")
    np.savez(path, points=np.concatenate([f.points for f in features]),
             descriptors=np.concatenate([f.descriptors for f in features]),
             counts=np.array([len(f) for f in features]), sizes=np.array([f.size for f in features]))
    return features


def top_k_mask(unit: np.ndarray, a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per pair (a, b): is b among a's k nearest neighbours, or a among b's."""
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    nearest = np.zeros(scores.shape, bool)
    np.put_along_axis(nearest, np.argpartition(-scores, k, axis=1)[:, :k], True, axis=1)
    return nearest[a, b] | nearest[b, a]


def vote_mask(local: list[LocalFeatures], a: np.ndarray, b: np.ndarray, per_image: int, neighbours: int,
              top: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidates by shared keypoints: each source's ``per_image`` strongest descriptors look up their
    ``neighbours`` nearest among all sources' (FLANN k-d trees) and vote for the sources they find;
    per pair (a, b), is b among a's ``top`` most voted sources, or a among b's. Also the votes."""
    n = len(local)
    descriptors = np.concatenate([f.descriptors[:per_image] for f in local]).astype(np.float32)
    owner = np.repeat(np.arange(n), [min(len(f), per_image) for f in local])
    index = cv2.flann_Index(descriptors, {"algorithm": 1, "trees": 4})
    found, _ = index.knnSearch(descriptors, neighbours + 1, params={"checks": 64})
    voter, target = np.repeat(owner, neighbours + 1), owner[found.ravel()]
    keep = voter != target
    votes = np.bincount(voter[keep] * n + target[keep], minlength=n * n).reshape(n, n)
    votes = votes + votes.T
    ranked = np.zeros((n, n), bool)
    np.put_along_axis(ranked, np.argpartition(-votes, top, axis=1)[:, :top], True, axis=1)
    ranked &= votes > 1
    return ranked[a, b] | ranked[b, a], votes[a, b]


def scores_of(accepted: np.ndarray, same: np.ndarray, kind_of_pair: np.ndarray) -> tuple[float, int, dict]:
    """Precision over all pairs, the number of different-photo pairs accepted, recall per kind."""
    hits, false = (accepted & same).sum(), (accepted & ~same).sum()
    recall = {kind: accepted[kind_of_pair == kind].mean() for kind in ("light", *HEAVY_EDIT_KINDS)}
    return hits / max(hits + false, 1), int(false), recall


def report(name: str, accepted: np.ndarray, same: np.ndarray, kind_of_pair: np.ndarray) -> None:
    """One line: precision over all pairs, false pairs, recall overall and per heavy kind."""
    precision, false, recall = scores_of(accepted, same, kind_of_pair)
    per_kind = "  ".join(f"{kind} {r:.3f}" for kind, r in recall.items())
    everything = (accepted & same).sum() / same.sum()
    print(f"{name:44s} P {precision:.4f} false {false:4d} R(all) {everything:.3f}  {per_kind}")


def pair_index(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """The position of pair (i, j), i < j, in the order of ``np.triu_indices(n, k=1)``."""
    return i * n - i * (i + 1) // 2 + (j - i - 1)


def sweep_floors(scores: np.ndarray, same: np.ndarray, kind_of_pair: np.ndarray, threshold: float,
                 candidates: np.ndarray, all_inliers: np.ndarray) -> float | None:
    """Section (c): the shipped rule at each floor of COSINE_FLOORS_SWEEP, from the cached inliers; the highest
    floor with precision >= TARGET_PRECISION and every kind's recall >= TARGET_RECALL + MARGIN (None if none):
    a higher floor lets fewer different photos with the same caption through."""
    print(f"\n(c) cosine floor of verified pairs, at the shipped min_inliers {SHIPPED_MIN_INLIERS} "
          f"(cached candidates and inliers); target: precision >= {TARGET_PRECISION}, every kind's recall >= "
          f"{TARGET_RECALL}")
    chosen = None
    for floor in COSINE_FLOORS_SWEEP:
        accepted = (scores >= threshold) | (candidates & (scores >= floor) & (all_inliers >= SHIPPED_MIN_INLIERS))
        precision, _, recall = scores_of(accepted, same, kind_of_pair)
        weakest = min(recall, key=recall.get)
        met = precision >= TARGET_PRECISION and recall[weakest] >= TARGET_RECALL + MARGIN
        report(f"floor {floor:.2f}{' (meets the targets)' if met else ''}", accepted, same, kind_of_pair)
        print(f"{'':44s} margins: precision {precision - TARGET_PRECISION:+.4f}, weakest kind {weakest} "
              f"{recall[weakest] - TARGET_RECALL:+.3f}")
        if met:
            chosen = floor
    print(f"highest floor that meets the targets with {MARGIN} to spare: {chosen}")
    return chosen


def shipped(features, sources: list, threshold: float, floor: float, same: np.ndarray, kind_of_pair: np.ndarray,
            a: np.ndarray, b: np.ndarray, feature_times: tuple[float, float]) -> None:
    """Section "shipped": ``find_edited_copies`` as a user calls it, on the features extracted before.

    The in-memory copies are all named "<Image>" by ``extract_features``: ``names`` gives each
    row its number, so that the pairs returned say which sources they are.
    """
    print(f"\nshipped: find_edited_copies(features, {threshold}, {floor}, names=row numbers, photos=sources), "
          f"min_inliers {SHIPPED_MIN_INLIERS}")
    wall, cpu = time.perf_counter(), time.process_time()
    pairs = find_edited_copies(features, threshold, floor, names=[str(i) for i in range(len(sources))],
                               photos=sources)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    i, j = np.array([[int(p[0]), int(p[1])] for p in pairs], dtype=np.int64).reshape(-1, 2).T
    accepted = np.zeros(len(same), bool)
    accepted[pair_index(i, j, len(sources))] = True
    assert (a[pair_index(i, j, len(sources))] == i).all() and (b[pair_index(i, j, len(sources))] == j).all()
    print(f"{len(pairs)} pairs returned, {accepted.sum()} different ones")
    report("find_edited_copies", accepted, same, kind_of_pair)
    n = len(sources)
    print(f"time per image ({n} images): extract_features {feature_times[0] / n * 1000:.1f} ms wall, "
          f"{feature_times[1] / n * 1000:.1f} ms CPU; find_edited_copies {wall / n * 1000:.1f} ms wall, "
          f"{cpu / n * 1000:.1f} ms CPU; both {(feature_times[0] + wall) / n * 1000:.1f} ms wall, "
          f"{(feature_times[1] + cpu) / n * 1000:.1f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, default=500, help="dev-set photos to use")
    parser.add_argument("--seed", type=int, default=0, help="seed of the heavy edits")
    parser.add_argument("--method", default="sift", choices=("sift", "orb"))
    parser.add_argument("--max-side", type=int, default=400)
    parser.add_argument("--floor", type=float, default=1.0,
                        help="also propose every pair with a cosine of this or more "
                             "(grows as N squared; 0.5 with --n 100)")
    parser.add_argument("--vote-points", type=int, default=150, help="keypoints a source votes with")
    parser.add_argument("--vote-neighbours", type=int, default=10, help="nearest descriptors each looks up")
    parser.add_argument("--vote-top", type=int, default=10, help="most voted sources kept per source")
    parser.add_argument("--floor-for-verified", type=float, default=None,
                        help="the cosine floor of the shipped find_edited_copies (default: the registry's "
                             "near_duplicate_floor; without one, the floor the sweep chooses)")
    parser.add_argument("--only-shipped", action="store_true",
                        help="skip sections (a) and (b); the floor sweep still runs when the floor is not known")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/heavy"))
    args = parser.parse_args()
    if not DEV_SET.is_dir():
        raise SystemExit(f"{DEV_SET}: the dev set is needed")
    cv2.setNumThreads(1)
    args.cache.mkdir(parents=True, exist_ok=True)

    files = list_images(DEV_SET)[: args.n]
    sources, photo_ids, kinds = heavy_copies(files, seed=args.seed)
    spec = model_spec(args.model)
    threshold = spec.near_duplicate_threshold
    shipped_floor = args.floor_for_verified if args.floor_for_verified is not None else spec.near_duplicate_floor
    tag = f"{args.n}_{args.seed}"
    # The first half of the shipped call, timed here and shared with the sections before it.
    net = load_model(args.model, include_top=False)
    wall, cpu = time.perf_counter(), time.process_time()
    features = extract_features(net, sources, backend="fastest")
    feature_times = (time.perf_counter() - wall, time.process_time() - cpu)
    print(f"features: {feature_times[0] / len(sources) * 1000:.1f} ms per image")
    vectors = features.vectors
    scores, same = pair_scores(vectors, photo_ids)
    a, b = np.triu_indices(len(sources), k=1)
    kinds = np.array(kinds)
    # The kind a pair's recall counts towards: an original and its own copy; other pairs are "".
    kind_of_pair = np.where(same & (kinds[a] == "original"), kinds[b], "")
    print(f"model {args.model}, {len(files)} photos, {len(sources)} sources: {same.sum()} same-photo pairs, "
          f"{(~same).sum()} different-photo pairs")
    for kind in ("light", *HEAVY_EDIT_KINDS):
        pair_cos = scores[kind_of_pair == kind]
        print(f"  cosine of a photo and its {kind:9s} copy: min {pair_cos.min():.3f}  5th pct "
              f"{np.percentile(pair_cos, 5):.3f}  median {np.median(pair_cos):.3f}")
    different = np.sort(scores[~same])[::-1]
    print(f"  different photos: max {different[0]:.3f}, 100th highest {different[min(99, len(different) - 1)]:.3f}")

    if args.only_shipped and shipped_floor is not None:
        shipped(features, sources, threshold, shipped_floor, same, kind_of_pair, a, b, feature_times)
        return

    print("\n(a) global cosine")
    report(f"cosine >= {threshold}", scores >= threshold, same, kind_of_pair)
    for t in np.arange(0.40, 0.80, 0.01) if not args.only_shipped else ():
        found = scores >= t
        if (found & same).sum() / max(found.sum(), 1) >= 0.99:
            report(f"cosine >= {t:.2f} (lowest with precision >= 0.99)", found, same, kind_of_pair)
            break
    report(f"cosine > {different[0]:.3f} (no false pair)", scores > different[0], same, kind_of_pair)
    # Candidates as find_edited_copies proposes them; the inliers of those below the threshold.

    print(f"\n(b) candidates verified by {args.method.upper()} at {args.max_side} px; accepted: cosine >= {threshold} "
          "or verified")
    local = cached_local_features(sources, args.cache / f"local_{args.method}_{args.max_side}_{tag}.npz",
                                  args.method, args.max_side)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    voted, _ = vote_mask(local, a, b, args.vote_points, args.vote_neighbours, args.vote_top)
    print(f"keypoint votes ({args.vote_points} points a source, {args.vote_neighbours} neighbours each, "
          f"top {args.vote_top}): {(time.perf_counter() - start) / len(sources) * 1000:.1f} ms per source")
    generators = {f"cosine top {CANDIDATES}": top_k_mask(unit, a, b, CANDIDATES), f"votes top {args.vote_top}": voted}
    if args.floor < threshold:
        generators[f"cosine >= {args.floor}"] = scores >= args.floor
    generators[f"votes top {args.vote_top} + cosine top {CANDIDATES}"] = voted | generators[f"cosine top {CANDIDATES}"]
    below = scores < threshold  # pairs at or above it are accepted without a check
    todo = np.flatnonzero(np.any(list(generators.values()), axis=0) & below)
    print(f"pairs to verify (all generators, cosine below {threshold}): {len(todo)}, {(~same[todo]).sum()} "
          "of them different photos")
    inliers = cached_inliers(local, a, b, todo, args.cache / f"inliers_{args.method}_{args.max_side}_{tag}.npz")
    all_inliers = np.zeros(len(scores), int)
    all_inliers[todo] = inliers
    wrong = np.sort(inliers[~same[todo]])[::-1]
    print(f"inliers of different-photo pairs checked: highest {wrong[:8].tolist()}")
    for kind in ("light", *HEAVY_EDIT_KINDS):
        checked = all_inliers[(kind_of_pair == kind) & below & np.any(list(generators.values()), axis=0)]
        if len(checked):
            print(f"  inliers of a photo and its {kind:9s} copy (cosine below {threshold}, candidates): "
                  f"{len(checked)} pairs, min {checked.min()}, 5th pct {np.percentile(checked, 5):.0f}")
    for name, candidates in generators.items() if not args.only_shipped else ():
        print(f"\ncandidates: {name}, {(candidates & below).sum()} to verify "
              f"({(candidates & below).sum() / len(sources):.1f} per source)")
        for m in MIN_INLIERS:
            accepted = (scores >= threshold) | (candidates & below & (all_inliers >= m))
            report(f"inliers >= {m:2d}", accepted, same, kind_of_pair)
    # Different photos with the same caption text share its keypoints; their cosine is low.
    candidates = generators[f"votes top {args.vote_top} + cosine top {CANDIDATES}"] & below
    print(f"\ncandidates: votes top {args.vote_top} + cosine top {CANDIDATES}, verified pairs also need a cosine floor")
    for floor in COSINE_FLOORS if not args.only_shipped else ():
        for m in (10, 15, 20, 30):
            accepted = (scores >= threshold) | (candidates & (scores >= floor) & (all_inliers >= m))
            report(f"cosine >= {floor:.2f} and inliers >= {m:2d}", accepted, same, kind_of_pair)
    del local  # the shipped call finds its own

    chosen = sweep_floors(scores, same, kind_of_pair, threshold, candidates, all_inliers)
    if shipped_floor is None:
        if chosen is None:
            raise SystemExit(f"{args.model} has no near_duplicate_floor and no floor of the sweep meets the targets: "
                             "pass --floor-for-verified")
        shipped_floor = chosen
    shipped(features, sources, threshold, shipped_floor, same, kind_of_pair, a, b, feature_times)


if __name__ == "__main__":
    main()
