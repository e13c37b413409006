"""Calibrate a model's near-duplicate threshold on the dev set (not shipped, not needed to run).

    python benchmarks/near_duplicate_threshold.py [--model NAME] [--n N]

Every dev-set photo gets two edited copies, as users' collections hold them:
mirrored + cropped to 85% + JPEG quality 60, and 30% brighter + half size.
A photo and its copies are same-photo pairs; every other pair is different
photos. Prints the score ranges, precision and recall at candidate thresholds,
to choose the model's ``near_duplicate_threshold`` in its ``helpers.models`` record.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import DEFAULT_MODEL, edit, extract_features, list_images, load_model  # noqa: E402
from helpers.similarity import normalize  # noqa: E402

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-dev"
EDITS = ({"mirror": True, "crop": 0.85, "jpeg_quality": 60}, {"brightness": 1.3, "scale": 0.5})


def edited_copies(files: list[Path]) -> tuple[list, np.ndarray]:
    """The photos, then each photo's copy for every edit in EDITS (PIL images), and the
    index of the photo that each of them shows."""
    sources = list(files) + [edit(f, **e) for e in EDITS for f in files]
    return sources, np.tile(np.arange(len(files)), 1 + len(EDITS))


def pair_scores(vectors: np.ndarray, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of all pairs of ``vectors`` (one matrix product), and whether each
    pair shows the same photo (``photo``: the index of the photo each vector shows)."""
    unit = normalize(vectors)
    a, b = np.triu_indices(len(unit), k=1)
    return (unit @ unit.T)[a, b], photo[a] == photo[b]


def precision_recall(scores: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of calling pairs at or above ``threshold`` duplicates."""
    found = scores >= threshold
    precision = (found & same).sum() / max(found.sum(), 1)
    return float(precision), float((found & same).sum() / same.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, default=500, help="dev-set photos to use")
    args = parser.parse_args()
    if not DEV_SET.is_dir():
        raise SystemExit(f"{DEV_SET}: the dev set is needed to calibrate")

    files = list_images(DEV_SET)[: args.n]
    sources, photo = edited_copies(files)
    scores, same = pair_scores(extract_features(load_model(args.model, include_top=False), sources).vectors, photo)
    print(f"model {args.model}, {len(files)} photos x {1 + len(EDITS)} versions: "
          f"{same.sum()} same-photo pairs, {(~same).sum()} different-photo pairs")
    print(f"same photo:      min {scores[same].min():.3f}  5th percentile {np.percentile(scores[same], 5):.3f}")
    print(f"different photo: max {scores[~same].max():.3f}  99.99th percentile {np.percentile(scores[~same], 99.99):.3f}")
    for threshold in np.arange(0.65, 0.86, 0.01):
        precision, recall = precision_recall(scores, same, threshold)
        print(f"threshold {threshold:.2f}: precision {precision:.4f} recall {recall:.4f}")


if __name__ == "__main__":
    main()
