"""Scale-out costs: Ray Data extraction against ``extract_features``, and FAISS approximate against exact.

    python benchmarks/scale_out.py [--part ray faiss] [--photos N] [--vectors N] [--queries Q]

Ray: the same JPEG photos (the dev set ../shared/data/imagenet-sample-dev repeated,
else images/ repeated) through ``extract_features`` in this process and through Ray
Data's ``map_batches`` with ``FeatureExtractor`` (what ``extract_features_ray``
runs) on a local Ray cluster of all cores, as one worker with every core or one
worker per core; both on the fastest backend (``backend="fastest"``). Wall times
depend on what else the machine runs; CPU seconds much less, so the workers report
their own (start-up, and per photo), and the Ray processes that stay (driver,
scheduler, object store, agents) are read from the system: the engine's overhead is
the workers' CPU per photo against ``extract_features``'s, their start-up, and the
cores Ray's other processes keep busy meanwhile.

FAISS: ``--vectors`` synthetic 1280-d float32 vectors and held-out queries drawn the
same way, in two shapes that bracket real features: "groups" (100 vectors around
each random centre, cosine about 0.5 within a group and 0 across, as photos group by
what they show: easy for an IVF index) and "subspace" (Gaussian in a random 64-d
subspace plus 10% noise, no groups: neighbours lie in every direction, harder).
Per index kind: build time, the memory it adds (resident set after the build minus
before; the gallery itself is a file mapped to memory), ms for one query and per
query in a batch of 64 (wall and CPU time of all threads), and recall@10 against the
exact index at a few nprobe.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from helpers import extract_features, list_images, load_model  # noqa: E402
from helpers.scale import FeatureExtractor, build_index, extract_features_ray, start_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"
WIDTH = 1280
PER_GROUP = 100


def photos(n: int) -> list[Path]:
    """``n`` photo paths: the dev set if present, else images/ repeated."""
    pool = list_images(DEV_SET) if DEV_SET.is_dir() else list_images(ROOT / "images")
    return [pool[i % len(pool)] for i in range(n)]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class TimedExtractor(FeatureExtractor):
    """``FeatureExtractor`` that also reports its worker's CPU seconds (every thread), in
    the first row of each batch: the batch's own, and with the first batch the start-up
    (Ray's worker, importing TensorFlow, loading the model)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.start_up = time.process_time()

    def __call__(self, batch):
        import pyarrow as pa

        cpu = time.process_time()
        table = super().__call__(batch)
        spent, start_up = [0.0] * len(table), [0.0] * len(table)
        spent[0] = time.process_time() - cpu
        start_up[0], self.start_up = self.start_up, 0.0
        return table.append_column("cpu", pa.array(spent)).append_column("start_up_cpu", pa.array(start_up))


def engine_cpu() -> dict[int, float]:
    """CPU seconds so far of this process and its descendants, except the model workers
    (they report their own): Ray's scheduler, object store and idle workers."""
    seconds = {}
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            if "MapWorker" not in " ".join(process.cmdline()):
                t = process.cpu_times()
                seconds[process.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return seconds


def ray_part(n: int) -> None:
    import ray

    files = photos(n)
    net = load_model(include_top=False)
    extract_features(net, files[:64], backend="fastest")  # warm up (and convert to LiteRT once)
    cpu = time.process_time()
    local = min(timed(lambda: extract_features(net, files, backend="fastest")) for _ in range(2))
    local_cpu = (time.process_time() - cpu) / (2 * n)  # every thread of this process
    print(f"extract_features, one process: {n / local:6.1f} img/s, {1000 * local_cpu:5.1f} CPU ms/img "
          f"({n} photos, load {load_average()})", flush=True)
    cores = len(os.sched_getaffinity(0))
    start_ray(num_cpus=cores)
    extract_features_ray(files[:8], workers=1).materialize()  # Ray's own first-run set-up
    for workers, cpus in [(1, cores), (cores, 1)]:
        dataset = ray.data.from_items([{"path": os.path.abspath(f)} for f in files])
        before = engine_cpu()
        start = time.perf_counter()
        rows = dataset.map_batches(TimedExtractor, batch_size=64, num_cpus=cpus,
                                   compute=ray.data.ActorPoolStrategy(size=workers),
                                   fn_constructor_kwargs={"model_name": net.name}).select_columns(
            ["cpu", "start_up_cpu"]).to_pandas()
        wall = time.perf_counter() - start
        after = engine_cpu()
        engine = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
        per_photo, start_up = rows["cpu"].sum() / n, rows["start_up_cpu"].sum() / workers
        print(f"Ray Data, {workers} worker(s) x {cpus} core(s): {n / wall:6.1f} img/s overall "
              f"({wall / local:.2f}x the time of extract_features); in the workers {1000 * per_photo:5.1f} "
              f"CPU ms/img ({per_photo / local_cpu:.2f}x extract_features) and {start_up:4.1f} CPU s start-up "
              f"each; Ray's other processes kept {engine / wall:.2f} cores busy (load {load_average()})", flush=True)


def synthetic(shape: str, n: int, n_queries: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Gallery (n, 1280) in a file mapped to memory (the system may page it out: only the
    indexes are measured) and queries (n_queries, 1280), float32, made in chunks of 64k rows."""
    rng = np.random.default_rng(0)
    if shape == "groups":
        centres = rng.standard_normal((max(1, n // PER_GROUP), WIDTH), dtype=np.float32)
    else:
        basis = rng.standard_normal((64, WIDTH), dtype=np.float32)

    def draw(rows: int) -> np.ndarray:
        if shape == "groups":  # a centre plus noise of the same norm
            return centres[rng.integers(len(centres), size=rows)] + rng.standard_normal((rows, WIDTH), np.float32)
        noise = 0.8 * rng.standard_normal((rows, WIDTH), np.float32)
        return rng.standard_normal((rows, 64), np.float32) @ basis + noise

    gallery = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, WIDTH))
    for start in range(0, n, 65536):
        gallery[start:start + 65536] = draw(min(65536, n - start))
    return gallery, draw(n_queries)


def resident_gib() -> float:
    """This process's anonymous resident memory (the indexes; not the gallery's mapped file), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no RssAnon in /proc/self/status")


def best_ms(run, repeats: int = 5) -> tuple[float, float]:
    """Wall and CPU milliseconds (all threads) of ``run()``, the best of a few runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        cpu = time.process_time()
        wall = timed(run)
        best = min(best, (1000 * wall, 1000 * (time.process_time() - cpu)))
    return best


def build(gallery: np.ndarray, names: list[str], kind: str):
    """An index of ``kind``, with its build time and the resident memory it added."""
    before, start = resident_gib(), time.perf_counter()
    index = build_index(gallery, names, kind=kind)
    seconds = time.perf_counter() - start
    print(f"{kind:<8} built in {seconds:6.1f} s, adds {resident_gib() - before:5.2f} GiB"
          + (f" (nlist {index.index.nlist})" if kind != "exact" else "") + f", load {load_average()}", flush=True)
    return index


def report(index, truth: np.ndarray, queries: np.ndarray) -> None:
    """Query times, and recall@10 against the exact top 10 ``truth`` (Q, 10), at a few nprobe for IVF."""
    probes = [None] if index.kind == "exact" else [p for p in [4, 16, 64, 256] if p <= index.index.nlist]
    for nprobe in probes:
        if nprobe is not None:
            index.nprobe = nprobe
        one, one_cpu = best_ms(lambda: index.search_ids(queries[:1], 10))
        batched, batched_cpu = best_ms(lambda: index.search_ids(queries[:64], 10), repeats=3)
        found = index.search_ids(queries, 10)[1]
        recall = np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])
        print(f"    nprobe {str(nprobe):>4}: one query {one:7.2f} ms ({one_cpu:7.2f} CPU ms), batched "
              f"{batched / 64:6.2f} ms/query ({batched_cpu / 64:6.2f} CPU ms), recall@10 {recall:.3f}", flush=True)


def faiss_part(shape: str, n: int, n_queries: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        gallery, queries = synthetic(shape, n, n_queries, Path(folder) / "gallery.npy")
        names = [str(i) for i in range(n)]
        print(f"{shape}: {n:,} vectors x {WIDTH} ({gallery.nbytes / 2**30:.2f} GiB), {n_queries} queries, "
              f"load {load_average()}", flush=True)
        # One index in memory at a time: the exact top 10 is kept, not the exact index.
        exact = build(gallery, names, "exact")
        truth = exact.search_ids(queries, 10)[1]
        report(exact, truth, queries)
        del exact
        for kind in ["ivf", "ivf_sq8"]:
            index = build(gallery, names, kind)
            report(index, truth, queries)
            del index
        del gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="*", choices=["ray", "faiss"], default=["ray", "faiss"])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--shapes", nargs="*", choices=["groups", "subspace"], default=["groups", "subspace"])
    args = parser.parse_args()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    print(f"{len(os.sched_getaffinity(0))} cores, TF_ENABLE_ONEDNN_OPTS={onednn}")
    if "ray" in args.part:
        ray_part(args.photos)
    if "faiss" in args.part:
        for shape in args.shapes:
            faiss_part(shape, args.vectors, args.queries)


if __name__ == "__main__":
    main()
