"""Images per second: ``classify`` from JPEG files vs ``model.predict`` on ready tensors.

    python benchmarks/classify_throughput.py [--model NAME] [--n N] [--batch-size B] [--repeats R]

Uses the dev set (../shared/data/imagenet-sample-dev) when present, else the
photos in images/ repeated. Both paths run the same model in the same process;
the ratio shows how much of the model's speed survives decoding files.
Target: ratio >= 0.85 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import classify, list_images, load_image, load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"


def photos(n: int) -> list[Path]:
    """``n`` photo paths: the dev set if present, else images/ repeated."""
    pool = list_images(DEV_SET) if DEV_SET.is_dir() else list_images(ROOT / "images")
    return [pool[i % len(pool)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    net = load_model(args.model)
    files = photos(args.n)
    ready = net.preprocess(np.stack([load_image(f, size=net.input_size) for f in files]))
    net.model.predict(ready[: args.batch_size], verbose=0)  # warm up: build the graph once

    decode_start = time.process_time()
    for f in files[:64]:
        load_image(f, size=net.input_size)
    decode_ms = 1000 * (time.process_time() - decode_start) / 64

    # Alternate the two paths and keep each one's best run, so that a burst of other work on
    # the machine does not decide the ratio.
    tensors = from_files = 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        net.model.predict(ready, batch_size=args.batch_size, verbose=0)
        tensors = max(tensors, len(files) / (time.perf_counter() - start))
        start = time.perf_counter()
        classify(net, files, batch_size=args.batch_size)
        from_files = max(from_files, len(files) / (time.perf_counter() - start))

    print(f"model {args.model}, {len(files)} photos from {files[0].parent}, batch {args.batch_size}, "
          f"{os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}")
    print(f"decode one photo (load_image, CPU time):   {decode_ms:6.1f} ms")
    print(f"model.predict on ready tensors:            {tensors:6.1f} img/s")
    print(f"classify from files:                       {from_files:6.1f} img/s")
    print(f"ratio files / tensors:                     {from_files / tensors:6.2f}")


if __name__ == "__main__":
    main()
