"""Images per second: ``classify`` from JPEG files, on each backend, vs ``model.predict`` on ready tensors.

    python benchmarks/classify_throughput.py [--model NAME] [--n N] [--batch-size B] [--repeats R]

Uses the dev set (../shared/data/imagenet-sample-dev) when present, else the
photos in images/ repeated. All paths run the same model in the same process;
the ratios show how much of plain Keras' speed on ready tensors ``classify``
reaches from files. Targets on 2 cores: Keras from files >= 0.85, LiteRT from
files >= 1.8.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import classify, list_images, load_image, load_model  # noqa: E402
from helpers.backends import litert_available  # noqa: E402

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

    # Alternate the paths and keep each one's best run, so that a burst of other work on
    # the machine does not decide the ratios.
    backends = ["keras", "litert"] if litert_available() else ["keras"]
    if "litert" in backends:
        classify(net, files[:8], backend="litert")  # convert, or load from the cache, once
    tensors, from_files = 0.0, dict.fromkeys(backends, 0.0)
    for _ in range(args.repeats):
        start = time.perf_counter()
        net.model.predict(ready, batch_size=args.batch_size, verbose=0)
        tensors = max(tensors, len(files) / (time.perf_counter() - start))
        for backend in backends:
            start = time.perf_counter()
            classify(net, files, batch_size=args.batch_size, backend=backend)
            from_files[backend] = max(from_files[backend], len(files) / (time.perf_counter() - start))

    print(f"model {args.model}, {len(files)} photos from {files[0].parent}, batch {args.batch_size}, "
          f"{os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}")
    print(f"decode one photo (load_image, CPU time):   {decode_ms:6.1f} ms")
    print(f"keras model.predict on ready tensors:      {tensors:6.1f} img/s")
    for backend, rate in from_files.items():
        print(f"classify from files, {backend:<6} backend:      {rate:6.1f} img/s   ratio {rate / tensors:4.2f}")


if __name__ == "__main__":
    main()
