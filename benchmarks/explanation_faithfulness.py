"""How faithful are the explainers? Deletion / insertion AUCs and the Grad-CAM pointing game on the dev set.

    python benchmarks/explanation_faithfulness.py [--model NAME] [--photos N] [--mosaics M] [--sanity K]

1. Deletion and insertion (Petsiuk et al. 2018) for every method in
   ``EXPLAINERS`` (default settings) and two random heatmaps (7x7 blobs, single
   pixels), on ``--photos`` dev photos spread over the classes, for each photo's
   true class: mean AUC and its standard error. Deletion: lower is better;
   insertion: higher is better.
2. The pointing game: ``--mosaics`` 2x2 mosaics of dev photos (shuffled with a
   fixed seed, each tile half the input size); for each tile, Grad-CAM for its
   true class should peak in that tile. Printed for the helpers' ``gradcam``
   (the gradient of the log-probability) and for the textbook Grad-CAM on the
   logit (keras-io's), at the registry's layer or ``--layer``: the hit rate
   (the heatmap's maximum in the right tile), the share of the heatmap's mass in
   that tile, and the hit rate on the tiles the model recognises alone.
3. The randomisation sanity check (Adebayo et al. 2018) on ``--sanity`` photos:
   the mean rank correlation of each method's map before and after scrambling
   the top 3 weighted layers (low = the map depends on what they learned).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# helpers first: it imports TensorFlow with its start-up lines silenced.
from helpers import (EXPLAINERS, deletion_curve, gradcam, imagenet_classes, insertion_curve,  # noqa: E402
                     list_images, load_image, load_model, mosaic, random_heatmap, randomization_check)
from helpers.explain import resize_heatmap, squashed  # noqa: E402
from helpers.graph import ClassScores, find_layer, gradcam_layer  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-dev"
RANDOM = {"random 7x7": 7, "random pixels": None}


def true_class(path: Path) -> int:
    """The class index of a dev photo named ``<wnid>_<label>.JPEG``."""
    wnids = [wnid for wnid, _ in imagenet_classes()]
    return wnids.index(path.name.split("_")[0])


def spread(files: list[Path], n: int) -> list[Path]:
    """``n`` files evenly spaced over the (class-sorted) list."""
    return [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]


def faithfulness(net, files: list[Path]) -> None:
    aucs = {name: ([], []) for name in [*EXPLAINERS, *RANDOM]}
    for i, path in enumerate(files):
        target = true_class(path)
        shape = load_image(path).shape[:2]
        heatmaps = {name: explain(net, path, target) for name, explain in EXPLAINERS.items()}
        heatmaps.update({name: random_heatmap(shape, grid, seed=i) for name, grid in RANDOM.items()})
        for name, heatmap in heatmaps.items():
            aucs[name][0].append(deletion_curve(net, path, heatmap, target).auc)
            aucs[name][1].append(insertion_curve(net, path, heatmap, target).auc)
    print(f"\nDeletion / insertion AUC, {len(files)} photos, true class (mean +- standard error)")
    print(f"{'method':<22} {'deletion (lower better)':>24} {'insertion (higher better)':>26}")
    for name, (deletion, insertion) in aucs.items():
        print(f"{name:<22} {_mean_se(deletion):>24} {_mean_se(insertion):>26}")


def logit_gradcam(net, image, class_index: int, layer: str | None) -> np.ndarray:
    """Textbook Grad-CAM (keras-io): the gradient of the class logit, not the log-probability."""
    found = find_layer(net.model, layer) if layer else gradcam_layer(net)
    pixels = load_image(image)
    scores = ClassScores(net.model, [found])
    with tf.GradientTape() as tape:
        (maps,), logits = scores(net.preprocess(squashed(net, pixels)))
        score = logits[:, class_index]
    importance = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2))
    cam = np.maximum(tf.reduce_sum(maps * importance[:, None, None, :], axis=-1)[0].numpy(), 0)
    return resize_heatmap(cam / cam.max() if cam.max() > 0 else cam, pixels.shape[:2])


def pointing_game(net, files: list[Path], mosaics: int, layer: str | None) -> None:
    order = np.random.default_rng(0).permutation(len(files))
    size = net.input_size[0]
    half = size // 2
    methods = {"gradcam (log-probability)": lambda image, c: gradcam(net, image, c, layer=layer),
               "textbook Grad-CAM (logit)": lambda image, c: logit_gradcam(net, image, c, layer)}
    hits = {name: [] for name in methods}
    shares = {name: [] for name in methods}
    recognised = []
    for m in range(min(mosaics, len(files) // 4)):
        tiles = [files[i] for i in order[4 * m:4 * m + 4]]
        image = mosaic(tiles, tile=half)
        alone = net.model(net.preprocess(np.stack([load_image(t, size=size) for t in tiles])), training=False)
        recognised += list(np.argmax(alone, axis=-1) == [true_class(t) for t in tiles])
        for k, tile in enumerate(tiles):
            for name, explain in methods.items():
                heatmap = explain(image, true_class(tile))
                quarters = np.array([heatmap[:half, :half].sum(), heatmap[:half, half:].sum(),
                                     heatmap[half:, :half].sum(), heatmap[half:, half:].sum()])
                row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
                hits[name].append((row >= half) * 2 + (col >= half) == k)
                shares[name].append(quarters[k] / quarters.sum() if quarters.sum() > 0 else 0.25)
    recognised = np.array(recognised)
    print(f"\nPointing game, {len(recognised)} tiles in {len(recognised) // 4} mosaics, "
          f"layer {layer or net.spec.last_conv_layer}; {recognised.mean():.3f} of the tiles recognised alone (top-1)")
    print(f"{'method':<27} {'hit rate':>9} {'mass in tile':>13} {'hit, recognised tiles':>22}")
    for name in methods:
        hit = np.array(hits[name])
        print(f"{name:<27} {hit.mean():>9.3f} {np.mean(shares[name]):>13.3f} {hit[recognised].mean():>22.3f}")


def sanity(net, files: list[Path]) -> None:
    print(f"\nRandomisation check, {len(files)} photos, top 3 weighted layers scrambled: Spearman of the maps")
    for name, explain in EXPLAINERS.items():
        rhos = [randomization_check(net, path, explain, true_class(path), scrambled_layers=3).spearman for path in files]
        print(f"{name:<22} {_mean_se(rhos):>16}")


def _mean_se(values: list[float]) -> str:
    values = np.asarray(values)
    if len(values) < 2:  # no spread to estimate from one value
        return f"{values.mean():.3f}"
    return f"{values.mean():.3f} +- {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--photos", type=int, default=50, help="dev photos for deletion / insertion (0 skips)")
    parser.add_argument("--mosaics", type=int, default=125, help="2x2 mosaics for the pointing game (0 skips)")
    parser.add_argument("--sanity", type=int, default=10, help="photos for the randomisation check (0 skips)")
    parser.add_argument("--layer", default=None, help="Grad-CAM layer for the pointing game (default: the registry's)")
    args = parser.parse_args()
    if not DEV_SET.is_dir():
        raise SystemExit(f"{DEV_SET}: the dev set is needed for this benchmark")
    files = list_images(DEV_SET)
    net = load_model(args.model)
    print(f"model {args.model}, dev set of {len(files)} photos")
    start = time.perf_counter()
    if args.photos:
        faithfulness(net, spread(files, args.photos))
    if args.mosaics:
        pointing_game(net, files, args.mosaics, args.layer)
    if args.sanity:
        sanity(net, spread(files, args.sanity))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
