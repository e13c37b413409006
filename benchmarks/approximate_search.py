"""Approximate search at a million vectors: recall@10 against CPU time per query, per FAISS index.

    python benchmarks/approximate_search.py [--vectors N] [--queries Q] [--shapes ...] [--indexes ...] [--append]

Three sets of --vectors 1280-d float32 vectors and --queries held-out queries: "groups" and
"subspace" are the synthetic sets of benchmarks/scale_out.py (100 vectors around each random
centre; Gaussian in a random 64-d subspace, no groups: the hard case); "real" is shaped like
EfficientNet-Lite0's average-pooled features: Gaussian with the mean and covariance of the real
vectors of the dev photos (../shared/data/imagenet-sample-dev: centre crop, mirror and four corner
crops of each, 3,000 vectors), the 2,500 real vectors other than the mirrors hidden among the
synthetic ones, and the mirrored views as queries.

For each index (FAISS ``index_factory`` strings, or "approximate": what
``helpers.scale.build_index(..., kind="approximate")`` builds, built by it; vectors normalised,
inner product = cosine): build time (wall, all cores), the memory it adds (resident set after the
build minus before; the gallery itself is a file mapped to memory), and at each search setting
the CPU time per query on ONE thread (queries one at a time) and recall@10 against the exact top
10 (a matrix product over the gallery, block by block). Prints one line per setting and writes
them, as they come, to --out as CSV: notebook 08 draws its figure from
``benchmarks/approximate_search.csv``. The indexes not chosen were measured with --indexes and,
for the PCA and product-quantisation ones, --vectors 60000 (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_out import WIDTH, load_average, resident_gib, synthetic  # noqa: E402

from helpers.scale import build_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"
TRAIN_ROWS = 131072  # training sample for PCA and k-means
INDEXES = {  # name: (factory string, search parameter, its values)
    "ivf1000": ("IVF1000,Flat", "nprobe", [4, 16, 64, 256]),
    # What build_index(..., kind="approximate") builds (PCA256,IVF4000,Flat,RFlat at a million), built by it.
    "approximate": ("build_index(kind='approximate') RFlat", "nprobe", [4, 8, 16, 32, 64]),
    "pca256_ivf4096_rflat": ("PCA256,IVF4096,Flat,RFlat", "nprobe", [8, 16, 32, 64, 128]),
    "pca128_hnsw32_rflat": ("PCA128,HNSW32,RFlat", "efSearch", [16, 32, 64, 128, 256]),
    "pca256_hnsw32_rflat": ("PCA256,HNSW32,RFlat", "efSearch", [16, 32, 64, 128, 256]),
    "pca512_hnsw32_rflat": ("PCA512,HNSW32,RFlat", "efSearch", [32, 64, 128, 256]),
    "hnsw32": ("HNSW32", "efSearch", [16, 32, 64, 128, 256]),
    "hnsw32_sq8_rflat": ("HNSW32_SQ8,RFlat", "efSearch", [16, 32, 64, 128, 256]),
    "ivf4096_pq64fs_rflat": ("IVF4096,PQ64x4fs,RFlat", "nprobe", [8, 16, 32, 64, 128]),
    "ivf4096_pq128fs_rflat": ("IVF4096,PQ128x4fs,RFlat", "nprobe", [8, 16, 32, 64, 128]),
}
K_FACTORS = [8, 16, 32]  # RFlat: candidates re-ranked by exact scores, as a multiple of k


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.array(rows, dtype=np.float32)
    faiss.normalize_L2(rows)
    return rows


def real_vectors(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Lite0 vectors of the dev photos: (views except the mirror (N*5, 1280), mirrors (N, 1280))."""
    if not cache.is_file():
        from helpers import VIEWS, crop_views, extract_features, list_images, load_model
        from helpers.images import load_images

        net = load_model(include_top=False)
        (h, w), fraction = net.input_size, net.spec.preprocessing.crop_fraction
        photos, _ = load_images(list_images(DEV_SET), (round(h / fraction), round(w / fraction)), crop_fraction=1.0)
        views = np.stack([crop_views(photo, (h, w)) for photo in photos])  # (N, 6, h, w, 3)
        np.savez(cache, **{view: extract_features(net, list(views[:, i]), backend="fastest").vectors
                           for i, view in enumerate(VIEWS)})
    saved = np.load(cache)
    others = np.concatenate([saved[v] for v in saved.files if v != "mirror"])
    return others, saved["mirror"]


def real_shaped(n: int, n_queries: int, path: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian vectors with the real vectors' mean and covariance, the real ones hidden among them
    (the last rows), and the real mirrored views as queries."""
    others, mirrors = real_vectors(cache)
    mean, cov = others.mean(axis=0), np.cov(np.concatenate([others, mirrors]), rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    factor = (vectors * np.sqrt(values.clip(0))).T.astype(np.float32)  # x = mean + z @ factor
    rng = np.random.default_rng(0)
    gallery = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, WIDTH))
    synthetic_rows = n - len(others)
    for start in range(0, synthetic_rows, 65536):
        rows = min(65536, synthetic_rows - start)
        gallery[start:start + rows] = mean + rng.standard_normal((rows, WIDTH), np.float32) @ factor
    gallery[synthetic_rows:] = others
    return gallery, mirrors[:n_queries]


def exact_top(gallery: np.ndarray, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The exact top k of each query by cosine (scores, ids), block by block over the mapped gallery."""
    q = unit(queries)
    best_scores = np.full((len(q), k), -np.inf, np.float32)
    best_ids = np.zeros((len(q), k), np.int64)
    for start in range(0, len(gallery), 65536):
        scores = q @ unit(gallery[start:start + 65536]).T
        scores = np.hstack([best_scores, scores])
        ids = np.hstack([best_ids, start + np.arange(scores.shape[1] - k)[None].repeat(len(q), 0)])
        order = np.argsort(-scores, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    return best_scores, best_ids


def build(factory: str, gallery: np.ndarray) -> tuple[faiss.Index, float, float]:
    before, start = resident_gib(), time.perf_counter()
    if factory.startswith("build_index"):
        index = build_index(gallery, [""] * len(gallery), kind="approximate").index
    else:
        index = faiss.index_factory(WIDTH, factory, faiss.METRIC_INNER_PRODUCT)
        sample = np.sort(np.random.default_rng(0).permutation(len(gallery))[:TRAIN_ROWS])
        index.train(unit(gallery[sample]))
        for start_row in range(0, len(gallery), 65536):
            index.add(unit(gallery[start_row:start_row + 65536]))
    return index, time.perf_counter() - start, resident_gib() - before


def set_parameter(index: faiss.Index, name: str, value: int, k_factor: int) -> None:
    refine = faiss.downcast_index(index)
    if isinstance(refine, faiss.IndexRefine):
        refine.k_factor = k_factor
        inner = faiss.downcast_index(refine.base_index)
    else:
        inner = refine
    if isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    setattr(inner if name == "nprobe" else inner.hnsw, name, value)


def cpu_per_query(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """CPU ms per query, one thread, queries one at a time; and the ids found."""
    found = np.empty((len(queries), k), np.int64)
    start = time.process_time()
    for i in range(len(queries)):
        found[i] = index.search(queries[i:i + 1], k)[1][0]
    return 1000 * (time.process_time() - start) / len(queries), found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--shapes", nargs="*", choices=["real", "groups", "subspace"],
                        default=["real", "groups", "subspace"])
    parser.add_argument("--indexes", nargs="*", choices=list(INDEXES), default=list(INDEXES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "approximate_search.csv")
    parser.add_argument("--append", action="store_true", help="add the rows to --out instead of replacing it")
    parser.add_argument("--real-cache", type=Path, default=Path(tempfile.gettempdir()) / "dev_views_lite0.npz")
    args = parser.parse_args()
    fields = ["shape", "index", "factory", "parameter", "value", "k_factor", "cpu_ms", "recall_at_10", "build_s",
              "memory_gib", "vectors"]
    append = args.append and args.out.is_file()
    out = open(args.out, "a" if append else "w", newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    if not append:
        writer.writeheader()
    print(f"{len(os.sched_getaffinity(0))} cores; builds on all of them, searches on one thread", flush=True)
    for shape in args.shapes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "gallery.npy"
            if shape == "real":
                gallery, queries = real_shaped(args.vectors, args.queries, path, args.real_cache)
            else:
                gallery, queries = synthetic("groups" if shape == "groups" else "subspace",
                                             args.vectors, args.queries, path)
            queries = unit(queries)
            scores, truth = exact_top(gallery, queries, k=20)
            truth = truth[:, :10]
            ranks = "  ".join(f"{r}: {np.median(scores[:, r - 1]):.3f}" for r in (1, 5, 6, 10, 11, 20))
            print(f"{shape}: {len(gallery):,} vectors, {len(queries)} queries, load {load_average()}; "
                  f"exact scores by rank, median over the queries: {ranks}", flush=True)
            for name in args.indexes:
                factory, parameter, values = INDEXES[name]
                faiss.omp_set_num_threads(os.cpu_count() or 1)
                index, seconds, gib = build(factory, gallery)
                print(f"  {name} ({factory}): built in {seconds:.0f} s, adds {gib:.2f} GiB", flush=True)
                faiss.omp_set_num_threads(1)
                for k_factor in K_FACTORS if "RFlat" in factory else [1]:
                    for value in values:
                        set_parameter(index, parameter, value, k_factor)
                        ms, found = cpu_per_query(index, queries)
                        r = recall(found, truth)
                        print(f"    {parameter} {value:4d} k_factor {k_factor}: {ms:6.2f} CPU ms/query, "
                              f"recall@10 {r:.3f}", flush=True)
                        writer.writerow({"shape": shape, "index": name, "factory": factory, "parameter": parameter,
                                     "value": value, "k_factor": k_factor, "cpu_ms": round(ms, 3),
                                     "recall_at_10": round(r, 4), "build_s": round(seconds),
                                     "memory_gib": round(gib, 2),
                                     "vectors": len(gallery)})
                        out.flush()
                del index
            del gallery
    out.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
