"""Past one laptop: feature extraction on Ray Data, and search with FAISS.

Ray Data spreads ``extract_features`` over the cores of this machine or the machines
of a cluster and writes (path, vector, error) rows to Parquet; FAISS searches the
vectors exactly, or approximately by reading a few of many lists (``kind="approximate"``
at a million grouped vectors: under a millisecond of CPU a query for 0.99 of the exact top 10,
where the exact index takes 0.7 s: ``benchmarks/approximate_search.py``).
Both are an optional extra, ``pip install -e ".[scale]"``: importing this module imports
neither.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .features import Features, extract_features
from .images import ImageLoadError, ImageSource
from .models import DEFAULT_MODEL, load_model
from .quiet import quiet_stderr
from .similarity import check_queries, check_threshold, check_top, check_vectors, normalize

if TYPE_CHECKING:  # optional: imported by the functions that use them
    import pyarrow
    import ray.data

INSTALL = 'pip install -e ".[scale]"'
ADD_ROWS = 65536  # vectors normalised and added to a FAISS index at a time: 320 MB at 1280-d
MIN_POINTS_PER_LIST = 39  # FAISS warns when k-means gets fewer training vectors per list
TRAIN_POINTS_PER_LIST = 64  # training sample for the IVF lists: enough for k-means, minutes not hours at 1M
DUPLICATE_QUERY_ROWS = 4096  # stored vectors per range search in near_duplicates


def _require(module: str, package: str):
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this needs {package}, part of the optional 'scale' extra: {INSTALL} "
                          f"(or pip install {package})") from None


# ---------------------------------------------------------------- Ray Data


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start Ray quietly: a local cluster inside this process, or join a running one.

    When Ray already runs as asked, nothing happens; otherwise Ray is shut down and
    started again, so a notebook cell re-run with other settings gets them: a local
    cluster asked for another number of cores restarts with it (the old one could
    lack the cores a worker asks for, and the work wait for them forever), and an
    address is joined afresh. Progress bars, Ray Data's log lines and the workers'
    output stay out of terminals and notebooks; Ray's log files
    (``/tmp/ray/session_latest/logs``) still hold everything.

    Args:
        address: None keeps the Ray that runs (if ``num_cpus`` matches it), else starts a
            cluster on this machine that ends with the process;
            ``"auto"`` joins the one ``ray start --head`` started here;
            ``"ray://HOST:10001"`` a remote cluster's head node.
        num_cpus: cores the local cluster may use (None: all, or whatever the running
            Ray has); ignored with ``address``, whose cluster has its own.

    In use (notebook 08 runs these lines; Ray takes half a minute to start, too long for a
    docstring test)::

        start_ray(num_cpus=2)
        write_parquet(extract_features_ray(list_images("images"), workers=1), "features.parquet")
        gallery = read_parquet("features.parquet", model_name="efficientnet_lite0").valid()
    """
    # Importing Ray in a notebook without ipywidgets logs a hint to install them and tqdm
    # warns the same: lines a reader cannot act on. Python's logging.disable reaches Ray's
    # logger before Ray has configured it.
    disabled = logging.root.manager.disable  # the caller's own setting, restored below
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray = _require("ray", "ray[data]")
            _require("ray.data", "ray[data]")
    finally:
        logging.disable(disabled)
    # An offline, embedded cluster has nothing to report to anyone.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized() and not _runs_as_asked(ray, address, num_cpus):
        ray.shutdown()
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _runs_as_asked(ray, address: str | None, num_cpus: int | None) -> bool:
    """Whether the running Ray is what ``start_ray`` was asked for (an address: never, to join it afresh)."""
    return address is None and (num_cpus is None or ray.cluster_resources().get("CPU") == num_cpus)


class FeatureExtractor:
    """A Ray Data callable: a batch of image paths in, pooled feature vectors out.

    Ray Data makes one instance per worker, so each worker loads the model once and
    keeps it for every batch it gets. A batch goes through ``extract_features``
    (``load_image``, then the model on the fastest backend): the same vectors as
    ``extract_features(..., backend="fastest")`` on one machine, and the Keras default's
    to about 0.001. A file that cannot be read becomes a row with a NaN vector and its
    error; the rest of the batch is kept. ``extract_features_ray`` runs it.

    Args:
        model_name: a name from ``available_models()``; loaded with ``include_top=False``.
        pooling: "avg" or "max".
        backend: as for ``extract_features``: "fastest" (LiteRT when installed), or
            "litert" or "keras".

    One batch, without Ray:

    >>> table = FeatureExtractor()({"path": np.array(["images/coffee.png", "images/missing.png"])})
    >>> table.column_names, table.column("error").to_pylist()
    (['path', 'vector', 'error'], [None, 'images/missing.png: no such file'])
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, pooling: str = "avg", backend: str | None = "fastest"):
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max' (one vector per image), got {pooling!r}")
        self.net = load_model(model_name, include_top=False)
        self.pooling, self.backend = pooling, backend

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        """A pyarrow Table for a batch ``{"path": array of str}``: columns ``path``
        (string), ``vector`` (fixed-size list of float32), ``error`` (string, null
        when the image loaded); the model name and pooling in its schema metadata."""
        pa = _require("pyarrow", "pyarrow")
        paths = [str(p) for p in batch["path"]]
        # In model batches of 32 inside Ray's batch. extract_features starts one worker thread per core
        # of the machine: Ray does not confine an actor to the cores it reserves for it.
        features = extract_features(self.net, paths, self.pooling, backend=self.backend)
        width = features.vectors.shape[1]
        table = pa.table({
            "path": pa.array(paths, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(features.vectors.ravel()), width),
            "error": pa.array(features.errors, pa.string()),
        })
        return table.replace_schema_metadata({"model_name": self.net.name, "pooling": self.pooling})


def extract_features_ray(paths, model_name: str = DEFAULT_MODEL, pooling: str = "avg", batch_size: int = 64,
                         workers: int = 2, cpus_per_worker: float = 1,
                         backend: str | None = "fastest") -> ray.data.Dataset:
    """Feature vectors of many images on Ray Data: a lazy dataset of (path, vector, error) rows.

    Nothing runs until the dataset is consumed (``write_parquet``, ``take_all``...).
    Starts a local Ray cluster first unless ``start_ray`` (or ``ray.init``) ran.

    Args:
        paths: image paths (made absolute: every worker must reach the same file,
            on a cluster a shared or mounted folder), or a Ray Dataset with a
            ``path`` column (for example ``ray.data.read_text`` of a list of paths).
        model_name: the headless model each worker loads once.
        pooling: "avg" or "max".
        batch_size: images per call of a worker.
        workers: how many model copies run at once (Ray actors).
        cpus_per_worker: cores Ray reserves for each.
        backend: as for ``extract_features``: "fastest" (LiteRT when installed), or
            "litert" or "keras".

    Returns:
        A ``ray.data.Dataset``; its rows in no fixed order.

    In use (notebook 08 runs these lines; Ray takes half a minute to start, too long for a
    docstring test)::

        start_ray(num_cpus=2)
        write_parquet(extract_features_ray(list_images("images"), workers=1), "features.parquet")
        gallery = read_parquet("features.parquet", model_name="efficientnet_lite0").valid()
    """
    ray = _require("ray", "ray[data]")
    start_ray()
    if not isinstance(paths, ray.data.Dataset):
        paths = ray.data.from_items([{"path": os.path.abspath(p)} for p in paths])
    return paths.map_batches(FeatureExtractor, batch_size=batch_size, num_cpus=cpus_per_worker,
                             compute=ray.data.ActorPoolStrategy(size=workers),
                             fn_constructor_kwargs={"model_name": model_name, "pooling": pooling,
                                                    "backend": backend})


def _local_or_url(folder) -> str:
    """Ray's workers do not share the caller's working directory: make local paths absolute."""
    folder = str(folder)
    return folder if "://" in folder else os.path.abspath(folder)


def write_parquet(dataset, folder) -> None:
    """Run a dataset of ``extract_features_ray`` and write its rows as Parquet files.

    The files in ``folder`` are replaced, not added to, so running twice does not
    double the rows. ``folder`` may be a local path or a URL every worker can write
    to (``s3://bucket/features``). Ray's C++ notices stay out of the output while it
    runs; a failure still raises, with the worker's traceback.

    In use (notebook 08 runs these lines; Ray takes half a minute to start, too long for a
    docstring test)::

        start_ray(num_cpus=2)
        write_parquet(extract_features_ray(list_images("images"), workers=1), "features.parquet")
        gallery = read_parquet("features.parquet", model_name="efficientnet_lite0").valid()
    """
    # Ray's core writes notices to file descriptor 2, where no setting reaches them (such as
    # one about restarting workers whose arguments are in the object store, at every run).
    with quiet_stderr():
        dataset.write_parquet(_local_or_url(folder), mode="overwrite")


def read_parquet(folder, model_name: str | None = None) -> Features:
    """The rows ``write_parquet`` wrote, as a ``Features`` set sorted by path (no Ray needed).

    Args:
        folder: the folder (or one file) of Parquet files.
        model_name: the model the vectors must come from; another is an error.

    Returns:
        ``Features`` with float32 vectors (N, D), NaN rows where ``errors`` says why.

    In use (notebook 08 runs these lines; Ray takes half a minute to start, too long for a
    docstring test)::

        start_ray(num_cpus=2)
        write_parquet(extract_features_ray(list_images("images"), workers=1), "features.parquet")
        gallery = read_parquet("features.parquet", model_name="efficientnet_lite0").valid()
    """
    pq = _require("pyarrow.parquet", "pyarrow")
    table = pq.read_table(_local_or_url(folder))
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "model_name" not in meta or "vector" not in table.column_names:
        raise ValueError(f"{folder}: not features written by write_parquet (no vector column or model name)")
    if model_name is not None and model_name != meta["model_name"]:
        raise ValueError(f"{folder}: these features were made by {meta['model_name']!r}, not {model_name!r}; "
                         f"extract them again with model_name={model_name!r}")
    # A distributed run writes rows in no fixed order: sort them so results are reproducible.
    table = table.sort_by("path")
    vectors = table.column("vector").combine_chunks()
    width = vectors.type.list_size
    return Features(vectors.flatten().to_numpy().reshape(-1, width), table.column("path").to_pylist(),
                    table.column("error").to_pylist(), meta["model_name"], meta["pooling"])


# ---------------------------------------------------------------- FAISS

INDEX_KINDS = ("exact", "ivf", "ivf_sq8", "approximate")
# kind="approximate", the one to use at scale (benchmarks/approximate_search.py): the vectors cut to
# their 256 main directions (PCA) for IVF with about 4 sqrt(N) lists, then the best REFINE_FACTOR x top
# re-scored exactly on the full vectors.
LISTS_PER_SQRT_N = 4
PCA_WIDTH = 256
REFINE_FACTOR = 16
NEAR_DUPLICATE_NEIGHBOURS = 32  # near_duplicates of an approximate index: the pairs among each item's nearest


def default_nlist(n: int, per_sqrt_n: int = 1) -> int:
    """IVF lists for n vectors: about ``per_sqrt_n`` sqrt(n), with at least 39 vectors to train each.

    >>> from helpers.scale import default_nlist
    >>> default_nlist(1_000_000), default_nlist(1_000_000, per_sqrt_n=4)
    (1000, 4000)
    """
    return max(1, min(round(per_sqrt_n * np.sqrt(n)), n // MIN_POINTS_PER_LIST))


class FaissIndex:
    """Cosine search with FAISS: exact, or approximate and much faster. Build with ``build_index``.

    Vectors are normalised, so FAISS's inner product is the cosine similarity.

    Attributes:
        index: the ``faiss.Index``.
        names: one name per stored vector, in the order added.
        kind: "exact", "ivf", "ivf_sq8" or "approximate".
        model_name: the model that made the vectors (None for a plain array).
        pooling: how they were pooled (None for a plain array).
    """

    def __init__(self, index, names: Sequence[str], kind: str, model_name: str | None = None,
                 pooling: str | None = None):
        self.index, self.names, self.kind = index, list(names), kind
        self.model_name, self.pooling = model_name, pooling

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def nlist(self) -> int | None:
        """IVF lists of the index (None when exact)."""
        return None if self.kind == "exact" else _ivf(self.index).nlist

    @property
    def nprobe(self) -> int | None:
        """IVF lists a query scans: more finds more true neighbours, more slowly (None when exact)."""
        return None if self.kind == "exact" else _ivf(self.index).nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.kind == "exact":
            raise ValueError("an exact index scans every vector: nprobe is for the approximate kinds")
        if not 1 <= value <= self.nlist:
            raise ValueError(f"nprobe must be 1 to nlist ({self.nlist}), got {value}")
        _ivf(self.index).nprobe = value

    def search_ids(self, queries, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row numbers of the ``top`` best matches of each query.

        Args:
            queries: float array (Q, D) (or one query (D,)).

        Returns:
            ``(scores, ids)``: float32 and int64 arrays (Q, top), best first; id -1
            where the index found fewer than ``top``.
        """
        check_top(top)
        queries, _ = check_queries(queries)
        if queries.shape[1] != self.index.d:
            raise ValueError(f"queries of shape {queries.shape} for an index of {self.index.d}-number vectors: "
                             "extract them with the model (and pooling) the index was built from")
        return self.index.search(normalize(queries), top)

    def search(self, queries, top: int = 10) -> list:
        """The ``top`` most similar stored items, best first: for one query (D,) a list of
        ``(name, score)``, for many (Q, D) one such list per query, as ``SimilarityIndex.search``.

        >>> gallery = extract_features(load_model(include_top=False), list_images("images"))
        >>> build_index(gallery).search(gallery.vectors[0], top=2)
        [('images/astronaut.png', 1.0), ('images/grace_hopper.jpg', 0.34)]
        """
        _, one = check_queries(queries)
        scores, ids = self.search_ids(queries, top)
        results = [[(self.names[i], float(s)) for s, i in zip(row_scores, row_ids) if i >= 0]
                   for row_scores, row_ids in zip(scores, ids)]
        return results[0] if one else results

    def search_image(self, net, source: ImageSource, top: int = 10) -> list[tuple[str, float]]:
        """The stored items most similar to a photo: its features, then ``search``.

        Args:
            net: the headless model that made the stored vectors.
            source: a path, PIL image or array.

        Raises:
            ValueError: ``net`` is not the model the index was built from.
            ImageLoadError: the photo cannot be loaded.

        >>> net = load_model(include_top=False)
        >>> index = build_index(extract_features(net, list_images("images")))
        >>> index.search_image(net, "images/coffee.png", top=1)
        [('images/coffee.png', 1.0)]
        """
        if self.model_name is not None and net.name != self.model_name:
            raise ValueError(f"this index holds features of {self.model_name!r}, not {net.name!r}: "
                             f"pass load_model({self.model_name!r}, include_top=False)")
        features = extract_features(net, [source], pooling=self.pooling or "avg")
        if features.errors[0] is not None:
            raise ImageLoadError(features.errors[0])
        return self.search(features.vectors[0], top)

    def near_duplicates(self, threshold: float) -> list[tuple[str, str, float]]:
        """Pairs of stored items with cosine similarity at least ``threshold``, highest first.

        Each block of stored vectors asks the index for everything within the
        threshold (FAISS range search; kind "approximate": each item's 32 nearest,
        re-scored exactly, since a range through its PCA is not a cosine, so an item
        with more than 32 near-duplicates keeps 32), so memory holds the pairs found,
        never an N x N matrix. On an approximate index a pair whose two items sit in
        lists that are not probed can be missed.

        Args:
            threshold: the least similarity of a pair, for example
                ``net.spec.near_duplicate_threshold``.

        Returns:
            ``(name_a, name_b, score)``, a stored before b: the format of ``find_near_duplicates``.

        >>> net = load_model(include_top=False)
        >>> index = build_index(extract_features(net, list_images("images")))
        >>> index.near_duplicates(net.spec.near_duplicate_threshold)
        [('images/flower.jpg', 'images/花.jpg', 1.0),
         ('images/motorcycle_left.png', 'images/motorcycle_right.png', 0.89)]
        """
        check_threshold(threshold)
        # FAISS keeps what scores above the radius: step just below, so a pair at the threshold counts.
        radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
        best: dict[tuple[int, int], float] = {}
        for start in range(0, len(self), DUPLICATE_QUERY_ROWS):
            stored = self.index.reconstruct_n(start, min(DUPLICATE_QUERY_ROWS, len(self) - start))
            if self.kind == "approximate":
                scores, ids = self.index.search(stored, min(NEAR_DUPLICATE_NEIGHBOURS, len(self)))
                rows = start + np.repeat(np.arange(len(stored)), ids.shape[1])
                scores, ids = scores.ravel(), ids.ravel()
                keep = (ids >= 0) & (ids != rows) & (scores > radius)
            else:
                limits, scores, ids = self.index.range_search(stored, radius)
                rows = start + np.repeat(np.arange(len(stored)), np.diff(limits.astype(np.int64)))
                keep = ids != rows
            # An approximate index may find a pair from one side only: keep it either way.
            firsts, seconds = np.minimum(rows, ids)[keep].tolist(), np.maximum(rows, ids)[keep].tolist()
            for pair, score in zip(zip(firsts, seconds), scores[keep].tolist()):
                if score > best.get(pair, -np.inf):
                    best[pair] = score
        pairs = sorted(best.items(), key=lambda item: (-item[1], item[0]))
        return [(self.names[a], self.names[b], score) for (a, b), score in pairs]

    def save(self, folder) -> None:
        """Write the index to ``folder``: ``index.faiss`` (FAISS's own format) and ``index.json``.

        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> build_index(np.eye(3), names=["cat", "dog", "car"]).save(folder.name)
        >>> load_index(folder.name).search([0.0, 0.9, 0.1], top=1)
        [('dog', 0.99)]
        """
        faiss = _require("faiss", "faiss-cpu")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        (folder / "index.json").write_text(json.dumps(
            {"kind": self.kind, "model_name": self.model_name, "pooling": self.pooling, "names": self.names},
            ensure_ascii=False))


def build_index(features, names: Sequence[str] | None = None, kind: str = "exact", nlist: int | None = None,
                nprobe: int = 16) -> FaissIndex:
    """A FAISS index for cosine search over feature vectors.

    Args:
        features: a ``Features`` set (use ``.valid()`` to drop failed images), or an
            array (N, D) with ``names``.
        names: one name per row (the set's sources when omitted).
        kind: "exact" (``IndexFlatIP``, scans every vector: the answers of
            ``SimilarityIndex``); "ivf" (``IndexIVFFlat``: vectors sorted into
            ``nlist`` lists by k-means, a query scans the ``nprobe`` nearest lists);
            "ivf_sq8" (the same with 1 byte per number instead of 4); "approximate",
            the one to use at scale on grouped vectors such as photos' features: the
            vectors cut to their 256 main directions (PCA) for an IVF index of about
            4 sqrt(N) lists, and the best 16 x top candidates re-scored exactly on the
            full vectors (no PCA for 256 vectors or fewer).
        nlist: lists of an IVF index; None is ``default_nlist(N)``, about sqrt(N)
            (four times that for "approximate").
        nprobe: lists a query scans (change it later with ``index.nprobe``).

    Returns:
        A ``FaissIndex``. It holds its own normalised float32 copy (1 byte per number
        for "ivf_sq8"); the vectors are added a block at a time, so building needs
        little memory beyond that. Approximate kinds return exact scores for the
        vectors they find ("ivf_sq8": to about 0.01).

    >>> gallery = extract_features(load_model(include_top=False), list_images("images"))
    >>> exact = build_index(gallery)
    >>> approximate = build_index(gallery, kind="approximate")
    >>> len(exact), len(approximate)
    (13, 13)
    """
    faiss = _require("faiss", "faiss-cpu")
    if kind not in INDEX_KINDS:
        raise ValueError(f"kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    vectors, names = check_vectors(features, names)
    if kind == "exact":
        index = faiss.IndexFlatIP(vectors.shape[1])
    else:
        index = _trained_ivf(faiss, vectors, kind, nlist, nprobe)
    for start in range(0, len(vectors), ADD_ROWS):
        index.add(normalize(vectors[start:start + ADD_ROWS]))
    return FaissIndex(index, names, kind, getattr(features, "model_name", None), getattr(features, "pooling", None))


def _trained_ivf(faiss, vectors: np.ndarray, kind: str, nlist: int | None, nprobe: int):
    """An empty IVF index of ``kind`` whose lists k-means learnt from a sample of ``vectors``."""
    n, width = vectors.shape
    if n == 0:
        raise ValueError("an IVF index learns its lists from the vectors: build it from at least one")
    chosen = default_nlist(n, LISTS_PER_SQRT_N if kind == "approximate" else 1) if nlist is None else nlist
    if not 1 <= chosen <= n:
        raise ValueError(f"nlist must be 1 to the number of vectors ({n}), got {chosen}")
    sample = np.random.default_rng(0).permutation(n)[:TRAIN_POINTS_PER_LIST * chosen]
    # PCA learns its directions from the training sample: with PCA_WIDTH vectors or fewer, nothing to cut.
    pca = f"PCA{PCA_WIDTH}," if min(len(sample), width) > PCA_WIDTH else ""
    factory = {"ivf": f"IVF{chosen},Flat", "ivf_sq8": f"IVF{chosen},SQ8",
               "approximate": f"{pca}IVF{chosen},Flat,RFlat"}[kind]
    index = faiss.index_factory(width, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = _ivf(index)
    # No "please provide at least" notice: default_nlist leaves 39 vectors a list wherever there are that
    # many, and a caller who picks nlist knows the sample is small.
    ivf.cp.min_points_per_centroid = 1
    index.train(normalize(vectors[np.sort(sample)]))
    ivf.nprobe = min(nprobe, chosen)
    if kind == "approximate":
        faiss.downcast_index(index).k_factor = REFINE_FACTOR  # re-scored on the full vectors: exact scores
    else:
        ivf.set_direct_map_type(faiss.DirectMap.Array)  # near_duplicates reads stored vectors back
    return index


def _ivf(index):
    """The IVF part of an index (inside the PCA and the re-scoring of kind "approximate")."""
    import faiss

    return faiss.extract_index_ivf(index)


def load_index(folder, model_name: str | None = None) -> FaissIndex:
    """Read an index written by ``FaissIndex.save``.

    Args:
        folder: the folder ``save`` wrote.
        model_name: the model its vectors must come from; another is an error.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> build_index(extract_features(load_model(include_top=False), list_images("images"))).save(folder.name)
    >>> index = load_index(folder.name, model_name="efficientnet_lite0")
    >>> index.search_image(load_model(include_top=False), "images/chelsea.png", top=1)
    [('images/chelsea.png', 1.0)]
    """
    faiss = _require("faiss", "faiss-cpu")
    folder = Path(folder)
    if not (folder / "index.faiss").is_file() or not (folder / "index.json").is_file():
        raise FileNotFoundError(f"{folder}: no index.faiss and index.json here; write them with FaissIndex.save")
    meta = json.loads((folder / "index.json").read_text())
    if model_name is not None and meta["model_name"] not in (None, model_name):
        raise ValueError(f"{folder}: this index holds features of {meta['model_name']!r}, not {model_name!r}")
    return FaissIndex(faiss.read_index(str(folder / "index.faiss")), meta["names"], meta["kind"],
                      meta["model_name"], meta["pooling"])


def recall_at_k(approximate: FaissIndex, exact: FaissIndex, queries, k: int = 10) -> float:
    """Share of the exact top-k that the approximate index also returns, averaged over queries.

    Args:
        approximate, exact: two indexes over the same vectors, in the same order.
        queries: float array (Q, D), one query (D,), or a ``Features`` set.
        k: how many neighbours count.

    >>> gallery = extract_features(load_model(include_top=False), list_images("images"))
    >>> approximate = build_index(gallery, kind="ivf", nlist=2, nprobe=2)  # every list: no miss
    >>> recall_at_k(approximate, build_index(gallery), gallery.vectors, k=5)
    1.0
    """
    if len(approximate) != len(exact):
        raise ValueError(f"the indexes hold {len(approximate)} and {len(exact)} vectors: build both from the same set")
    _, found = approximate.search_ids(queries, k)
    _, truth = exact.search_ids(queries, k)
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / max((t >= 0).sum(), 1) for f, t in zip(found, truth)]
    return float(np.mean(hits))
