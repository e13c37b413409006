"""Similarity search and feature extraction at scale: times and memory.

    python benchmarks/similarity_search.py [--sizes 10000 100000 1000000] [--images 2000 10000]

Search: galleries of random unit 1280-d float32 vectors; top-10 time for one
query and per query in a batch of 64, and the peak memory numpy allocated
(tracemalloc) while building and searching. Targets on 2 cores: one query
< 40 ms at 100k and < 400 ms at 1M; batched < 5 ms per query at 100k.
Extraction: images/s on each backend and the process's peak RSS after 2k and
after 10k photos (images/ repeated); memory is flat in N when the peaks are close.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from helpers import SimilarityIndex, extract_features, list_images, load_model  # noqa: E402
from helpers.engine import litert_available  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIM = 1280


def best_time(run, repeats: int = 5) -> float:
    """The fastest of a few runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def search(n: int) -> None:
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((n, DIM), dtype=np.float32)
    queries = rng.standard_normal((64, DIM), dtype=np.float32)
    tracemalloc.start()
    index = SimilarityIndex(gallery, [str(i) for i in range(n)])
    one = best_time(lambda: index.search(queries[0], top=10))
    batched = best_time(lambda: index.search(queries, top=10), repeats=3) / len(queries)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"search {n:>9,} x {DIM}: one query {1000 * one:7.1f} ms, batched {1000 * batched:6.2f} ms/query, "
          f"index adds at peak {peak / 2**30:5.2f} GiB to the gallery's {gallery.nbytes / 2**30:.2f} GiB; "
          f"process peak RSS so far {rss:5.2f} GiB", flush=True)


def extraction(counts: list[int]) -> None:
    net = load_model(include_top=False)
    photos = list_images(ROOT / "images")
    for backend in ["keras", "litert"] if litert_available() else ["keras"]:
        extract_features(net, photos, backend=backend)  # warm up (and convert once)
        for n in counts:
            files = [photos[i % len(photos)] for i in range(n)]
            start = time.perf_counter()
            extract_features(net, files, backend=backend)
            rate = n / (time.perf_counter() - start)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
            print(f"extract_features {n:>6,} photos, {backend:<6}: {rate:5.1f} img/s, "
                  f"process peak RSS so far {peak:5.2f} GiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--images", type=int, nargs="*", default=[2_000, 10_000])
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}")
    if args.images:
        extraction(args.images)
    for n in args.sizes:
        search(n)


if __name__ == "__main__":
    main()
