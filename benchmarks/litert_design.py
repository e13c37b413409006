"""Why LiteRT runs batches 4 images at a time, and why ``classify`` runs one worker per core.

    python benchmarks/litert_design.py [--model NAME] [--n N]

1. Images per second of one LiteRT call on decoded photos, one inference thread, by
   sub-batch size (``LiteRTModel.sub_batch``, default ``helpers.engine.SUB_BATCH``), float32
   and int8 (calibrated on images/).
2. ``stream_batches`` from JPEG files at int8: one worker whose interpreter uses every
   core (decoding, then inference, in turn) against one worker per core, each on a
   single-threaded interpreter (the default).

Uses the dev set (../shared/data/imagenet-sample-dev) when present, else the photos in
images/ repeated; best of 3, every variant in one run, alternating. On a terminal,
``stream_batches`` shows its progress bars on stderr; the figures go to stdout.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import load_image, load_model  # noqa: E402
from helpers.engine import LiteRTModel, calibration_crops, stream_batches, usable_cores  # noqa: E402
from classify_throughput import CALIBRATION, photo_paths  # noqa: E402  (the script's own folder is on sys.path)


def best_rate(run, count: int, repeats: int = 3) -> float:
    """Images per second of ``run``, best of ``repeats``."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    net = load_model(args.model)
    files = photo_paths(args.n)
    decoded = np.stack([load_image(f, size=net.input_size, dtype="uint8") for f in files])
    print(f"model {args.model}, {len(files)} photos from {files[0].parent}, {usable_cores()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    sizes = (1, 2, 4, 8, 32)
    crops = calibration_crops(CALIBRATION, net.input_size)
    fast = {"float32": LiteRTModel(net.model, preprocess=net.preprocess),
            "int8": LiteRTModel(net.model, precision="int8", preprocess=net.preprocess, calibration=crops)}
    rates: dict[tuple[str, int], float] = {}
    for _ in range(3):  # alternate, so that a burst of other work does not pick the winner
        for precision, model in fast.items():
            for size in sizes:
                model.sub_batch = size
                rate = best_rate(lambda: [model.on_photos(decoded[i:i + 32], threads=1)  # noqa: B023
                                          for i in range(0, len(decoded), 32)], len(files), 1)
                rates[precision, size] = max(rates.get((precision, size), 0.0), rate)
    print("1. one thread, images/s by sub-batch size:", "  ".join(f"{s:>6}" for s in sizes))
    for precision in fast:
        print(f"   {precision:<40}", "  ".join(f"{rates[precision, s]:6.1f}" for s in sizes))

    def stream(workers):
        return lambda: list(stream_batches(net, files, workers=workers, precision="int8", calibration=CALIBRATION))

    cores = usable_cores()
    variants = {f"one worker, {cores}-thread interpreter": stream(1),
                f"{cores} workers, 1-thread interpreters": stream(cores)}
    found = dict.fromkeys(variants, 0.0)
    for _ in range(3):
        for name, run in variants.items():
            found[name] = max(found[name], best_rate(run, len(files), 1))
    print("2. int8 from JPEG files, images/s:")
    for name, rate in found.items():
        print(f"   {name:<40} {rate:6.1f}")


if __name__ == "__main__":
    main()
