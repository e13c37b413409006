"""Calibration of the ImageNet models on the dev set: temperature scaling, test-time augmentation, rejection.

    python benchmarks/calibration.py [MODEL ...]

For each model (default: every offline model), from Keras through ``predict_views``:

- per set of views (the centre crop alone; with its mirror image; with the four corner
  crops too): top-1, expected calibration error (15 bins), negative log-likelihood and mean
  confidence on the 500 dev photos, and how many photos the views put right that the centre
  crop alone got wrong ("fixed"), and the other way round ("broken");
- temperature scaling, two-fold: a temperature fitted on one half of the dev set (every
  other photo) and the ECE and NLL it gives on the other half, and the other way round;
- the top probability that 95% of the dev photos reach (``acceptance_threshold``): the
  registry's ``confidence_threshold``.

The dev set (../shared/data/imagenet-sample-dev, 500 photos named <wnid>_<label>.JPEG, one per
every other class) is development data, not shipped. benchmarks/README.md's calibration tables come
from here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import (acceptance_threshold, apply_temperature, available_models, expected_calibration_error,  # noqa: E402
                     fit_temperature, imagenet_classes, list_images, load_model, model_spec, predict_views)

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-dev"
VIEW_SETS = {"centre crop": ("center",), "+ mirror": ("center", "mirror"),
             "+ mirror + 4 corners": ("center", "mirror", "top_left", "top_right", "bottom_left", "bottom_right")}


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-12))))


def measure(model_name: str) -> None:
    files = list_images(DEV_SET)
    index = {wnid: i for i, (wnid, _) in enumerate(imagenet_classes())}
    labels = np.array([index[f.name[:9]] for f in files])
    net = load_model(model_name)
    print(f"{model_name} ({len(files)} dev photos)")
    centre = None
    for name, views in VIEW_SETS.items():
        probabilities, errors = predict_views(net, files, views=views)
        assert not any(errors), [e for e in errors if e]
        probabilities = probabilities.astype(np.float64)
        probabilities /= probabilities.sum(axis=1, keepdims=True)  # float32 rows sum to 1 only to ~1e-6
        centre = probabilities if centre is None else centre
        right, right_before = probabilities.argmax(axis=1) == labels, centre.argmax(axis=1) == labels
        # Paired against the centre crop on the same photos: how many it puts right, and wrong.
        fixed, broken = np.sum(right & ~right_before), np.sum(~right & right_before)
        changed = f"  fixed {fixed}, broken {broken}" if views != ("center",) else ""
        print(f"  {name:<22} top-1 {right.mean():.3f}  ECE {expected_calibration_error(probabilities, labels):.3f}  "
              f"NLL {nll(probabilities, labels):.3f}  mean confidence {probabilities.max(axis=1).mean():.3f}{changed}")
    halves = [np.arange(0, len(files), 2), np.arange(1, len(files), 2)]
    for fit_on, judge_on in [halves, halves[::-1]]:
        temperature = fit_temperature(centre[fit_on], labels[fit_on])
        before, after = centre[judge_on], apply_temperature(centre[judge_on], temperature)
        print(f"  temperature fitted on {len(fit_on)} photos: {temperature:.2f}; "
              f"on the other {len(judge_on)}: ECE {expected_calibration_error(before, labels[judge_on]):.3f} -> "
              f"{expected_calibration_error(after, labels[judge_on]):.3f}, "
              f"NLL {nll(before, labels[judge_on]):.3f} -> {nll(after, labels[judge_on]):.3f}")
    threshold = acceptance_threshold(centre.max(axis=1), accept=0.95)
    print(f"  top probability 95% of the dev photos reach (centre crop): {threshold:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="registry names (default: every offline model)",
                        default=[name for name in available_models() if model_spec(name).offline])
    args = parser.parse_args()
    if not DEV_SET.is_dir():
        raise SystemExit(f"{DEV_SET}: the dev set is needed to measure calibration")
    for name in args.models:
        measure(name)


if __name__ == "__main__":
    main()
