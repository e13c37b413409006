"""Calibrate a model's near-duplicate threshold on the dev set (not shipped, not needed to run).

    python benchmarks/near_duplicate_threshold.py [--model NAME] [--n N]

Every dev-set photo gets two edited copies, as users' collections hold them
(``helpers.images.NEAR_DUPLICATE_EDITS``): mirrored + cropped to 85% + JPEG
quality 60, and 30% brighter + half size. A photo and its copies are same-photo
pairs; every other pair is different photos. Prints the score ranges, precision
and recall at candidate thresholds, to choose the model's ``near_duplicate_threshold``
in its ``helpers.models`` record. Features come from the fastest backend, as batch
jobs extract them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import DEFAULT_MODEL, extract_features, list_images, load_model  # noqa: E402
from helpers.images import NEAR_DUPLICATE_EDITS, edited_copies  # noqa: E402
from helpers.similarity import pair_scores, precision_recall  # noqa: E402

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, default=500, help="dev-set photos to use")
    args = parser.parse_args()
    if not DEV_SET.is_dir():
        raise SystemExit(f"{DEV_SET}: the dev set is needed to calibrate")

    files = list_images(DEV_SET)[: args.n]
    sources, photo_ids = edited_copies(files)
    net = load_model(args.model, include_top=False)
    scores, same = pair_scores(extract_features(net, sources, backend="fastest"), photo_ids)
    print(f"model {args.model}, {len(files)} photos x {1 + len(NEAR_DUPLICATE_EDITS)} versions: "
          f"{same.sum()} same-photo pairs, {(~same).sum()} different-photo pairs")
    print(f"same photo:      min {scores[same].min():.3f}  5th percentile {np.percentile(scores[same], 5):.3f}")
    print(f"different photo: max {scores[~same].max():.3f}  99.99th percentile {np.percentile(scores[~same], 99.99):.3f}")
    for threshold in np.arange(0.65, 0.86, 0.01):
        precision, recall = precision_recall(scores, same, threshold)
        print(f"threshold {threshold:.2f}: precision {precision:.4f} recall {recall:.4f}")


if __name__ == "__main__":
    main()
