"""Top-1 and top-5 accuracy on the dev set, through ``classify`` from the JPEG files.

    python benchmarks/dev_set_accuracy.py [MODEL ...]

The dev set (../shared/data/imagenet-sample-dev, 500 photos named <wnid>_<label>.JPEG)
is development data, not shipped: the wnid in each file name is the true class.
Prints one line per model; benchmarks/README.md's accuracy table comes from here. The models run on
LiteRT in float32 when it is installed (``backend="fastest"``: the Keras model's outputs to
1e-3, about twice as fast), else on Keras.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers import available_models, classify, list_images, load_model, model_spec  # noqa: E402

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-dev"


def accuracy(model_name: str) -> tuple[float, float, int]:
    """(top-1, top-5, number of photos) of a registry model on the dev set."""
    files = list_images(DEV_SET)
    results = classify(load_model(model_name), files, backend="fastest")
    truth = [f.name[:9] for f in files]
    top1 = sum(r.predictions[0][0] == t for r, t in zip(results, truth)) / len(files)
    top5 = sum(t in [wnid for wnid, _, _ in r.predictions] for r, t in zip(results, truth)) / len(files)
    return top1, top5, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="registry names (default: every offline model)",
                        default=[name for name in available_models() if model_spec(name).offline])
    args = parser.parse_args()
    if not DEV_SET.is_dir():
        raise SystemExit(f"{DEV_SET}: the dev set is needed to measure accuracy")
    for name in args.models:
        top1, top5, n = accuracy(name)
        print(f"{name:<20} top-1 {top1:.3f}  top-5 {top5:.3f}  ({n} photos, center crop)")


if __name__ == "__main__":
    main()
