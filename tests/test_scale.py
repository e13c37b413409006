import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from helpers import ImageLoadError, SimilarityIndex, extract_features, find_near_duplicates, list_images
from helpers.similarity import normalize
from support import IMAGES, ROOT, check_models

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason='faiss-cpu is not installed (the scale extra): pip install -e ".[scale]"')
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='ray[data] is not installed (the scale extra): pip install -e ".[scale]"')


def _clustered(n=2000, width=32, clusters=40, seed=0):
    """Random vectors around a few centres, as image features group by what they show."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, width))
    return (centres[rng.integers(clusters, size=n)] + 0.6 * rng.normal(size=(n, width))).astype(np.float32)


def test_importing_helpers_imports_neither_ray_nor_faiss():
    code = "import sys, helpers; print(sorted(m for m in ('ray', 'faiss') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_missing_extra_names_the_install_command(monkeypatch):
    from helpers.scale import build_index, start_ray

    monkeypatch.setitem(sys.modules, "faiss", None)  # makes "import faiss" fail
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'faiss-cpu.*pip install -e "\.\[scale\]"'):
        build_index(np.ones((3, 4)), list("abc"))
    with pytest.raises(ImportError, match=r'ray\[data\].*pip install -e "\.\[scale\]"'):
        start_ray()


def test_start_ray_starts_again_only_when_asked_for_other_cores_or_a_cluster(monkeypatch):
    from helpers.scale import start_ray

    started, running = [], {}  # what Ray would do, without the half minute a real start takes

    def init(address=None, num_cpus=None, **quiet):
        started.append((address, num_cpus))
        running["CPU"] = float(num_cpus or 8)

    fake = types.SimpleNamespace(init=init, shutdown=running.clear, is_initialized=lambda: bool(running),
                                 cluster_resources=lambda: dict(running),
                                 data=types.SimpleNamespace(DataContext=types.SimpleNamespace(
                                     get_current=types.SimpleNamespace)))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.data", fake.data)
    start_ray(num_cpus=2)
    start_ray(num_cpus=2)  # a re-run cell: the same cluster
    start_ray()  # extract_features_ray's call: whatever runs
    start_ray(num_cpus=4)  # other settings: a new cluster with them
    start_ray("ray://head:10001")
    start_ray("ray://head:10001")  # an address: joined afresh
    start_ray()  # extract_features_ray after joining: the joined cluster
    start_ray(num_cpus=2)  # a local cluster again (the fake cluster has 8 cores)
    assert started == [(None, 2), (None, 4), ("ray://head:10001", None), ("ray://head:10001", None), (None, 2)]


@needs_faiss
def test_exact_index_agrees_with_similarity_index():
    from helpers.scale import build_index

    gallery = _clustered(500)
    names = [f"img{i}" for i in range(len(gallery))]
    queries = _clustered(5, seed=1)
    exact = build_index(gallery, names)
    for found, expected in zip(exact.search(queries, top=10), SimilarityIndex(gallery, names).search(queries, top=10)):
        assert [n for n, _ in found] == [n for n, _ in expected]
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert exact.search(queries[0], top=3) == exact.search(queries, top=3)[0]
    assert len(exact.search(queries[0], top=1000)) == 500  # no padding rows past the end
    with pytest.raises(ValueError, match="index of 32-number vectors"):
        exact.search(queries[:, :16])


@needs_faiss
@pytest.mark.parametrize("kind", ["ivf", "ivf_sq8"])
def test_approximate_index_recall_grows_with_the_lists_it_scans(kind):
    from helpers.scale import build_index, recall_at_k

    gallery, queries = _clustered(), _clustered(50, seed=1)
    names = [str(i) for i in range(len(gallery))]
    exact = build_index(gallery, names)
    approximate = build_index(gallery, names, kind=kind, nlist=32, nprobe=1)
    recalls = {}
    for nprobe in [1, 4, 32]:
        approximate.nprobe = nprobe
        recalls[nprobe] = recall_at_k(approximate, exact, queries, k=10)
    assert recalls[1] <= recalls[4] <= recalls[32]
    assert recalls[1] < 1
    # Scanning every list is exact search, up to the 1-byte rounding of SQ8.
    assert recalls[32] == 1.0 if kind == "ivf" else recalls[32] >= 0.9
    with pytest.raises(ValueError, match="nprobe must be 1 to nlist"):
        approximate.nprobe = 33
    with pytest.raises(ValueError, match="kind must be one of"):
        build_index(gallery, names, kind="hnsw")


@needs_faiss
def test_the_recommended_approximate_index_rescores_a_short_list_exactly():
    import faiss

    from helpers.scale import REFINE_FACTOR, build_index, default_nlist, recall_at_k

    rng = np.random.default_rng(0)
    gallery = _clustered(5000, width=300, clusters=100)
    queries = gallery[:50] + 0.3 * rng.normal(size=(50, 300)).astype(np.float32)
    names = [str(i) for i in range(len(gallery))]
    exact = build_index(gallery, names)
    approximate = build_index(gallery, names, kind="approximate", nprobe=1)
    assert approximate.nlist == default_nlist(5000, per_sqrt_n=4) == 128 and exact.nlist is None
    pca = faiss.downcast_index(faiss.downcast_index(approximate.index).base_index)
    assert faiss.downcast_VectorTransform(pca.chain.at(0)).d_out == 256  # 300 numbers cut to their 256 main directions
    assert faiss.downcast_index(approximate.index).k_factor == REFINE_FACTOR
    recalls = {}
    for nprobe in [1, 8, 128]:
        approximate.nprobe = nprobe
        recalls[nprobe] = recall_at_k(approximate, exact, queries, k=10)
    assert recalls[1] < recalls[8] <= recalls[128] and recalls[128] >= 0.99
    # What it finds scores as the exact index scores it: re-scored on the full vectors.
    scores, ids = approximate.search_ids(queries, 10)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", normalize(queries), normalize(gallery)[ids]), atol=1e-5)
    with pytest.raises(ValueError, match="an exact index scans every vector"):
        exact.nprobe = 2


@needs_faiss
@pytest.mark.parametrize("kind", ["exact", "ivf", "approximate"])
def test_near_duplicates_by_range_search_equal_the_blockwise_ones(kind):
    from helpers.scale import build_index

    rng = np.random.default_rng(2)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    gallery[200:220] = gallery[:20] + 0.2 * rng.normal(size=(20, 16))  # planted near-duplicates
    gallery[250] = gallery[5]  # an exact copy: a third member of one pair's group
    names = [f"img{i}" for i in range(len(gallery))]
    index = build_index(gallery, names, kind=kind, nlist=4)
    if kind != "exact":
        index.nprobe = 4  # every list: nothing can be missed
    found = index.near_duplicates(0.8)
    expected = find_near_duplicates(gallery, 0.8, names)
    assert len(expected) >= 20
    assert [(a, b) for a, b, _ in found] == [(a, b) for a, b, _ in expected]
    assert [s for *_, s in found] == pytest.approx([s for *_, s in expected], abs=1e-5)
    with pytest.raises(ValueError, match="threshold is None"):
        index.near_duplicates(None)


@needs_faiss
def test_saved_index_answers_the_same_after_loading(tmp_path):
    from helpers.scale import build_index, load_index

    gallery = _clustered(400, width=300)  # wider than PCA_WIDTH: "approximate" saves its PCA and re-scoring
    names = [f"photo {i}.jpg" for i in range(len(gallery))]
    for kind in ["exact", "ivf", "approximate"]:
        index = build_index(gallery, names, kind=kind, nlist=8, nprobe=2)  # 8 lists: 400 vectors train the PCA
        index.save(tmp_path / kind)
        loaded = load_index(tmp_path / kind)
        assert (loaded.kind, loaded.nlist, loaded.nprobe, len(loaded)) == (kind, index.nlist, index.nprobe, 400)
        assert type(loaded.index) is type(index.index)
        if kind == "approximate":
            import faiss

            assert faiss.downcast_index(loaded.index).k_factor == faiss.downcast_index(index.index).k_factor == 16
            assert isinstance(faiss.downcast_index(faiss.downcast_index(loaded.index).base_index),
                              faiss.IndexPreTransform)
        assert loaded.search(gallery[:5], top=5) == index.search(gallery[:5], top=5)
    with pytest.raises(FileNotFoundError, match="FaissIndex.save"):
        load_index(tmp_path / "nothing")


@needs_faiss
def test_search_by_image_path(lite0_headless, tiny_net):
    from helpers.scale import build_index

    photos = list_images(IMAGES)
    index = build_index(extract_features(lite0_headless, photos))
    best, score = index.search_image(lite0_headless, IMAGES / "coffee.png", top=1)[0]
    assert best.endswith("coffee.png") and score == pytest.approx(1, abs=1e-4)
    with pytest.raises(ImageLoadError, match="no such file"):
        index.search_image(lite0_headless, IMAGES / "missing.png")
    with pytest.raises(ValueError, match="holds features of 'efficientnet_lite0', not 'tiny'"):
        index.search_image(tiny_net(top=False), IMAGES / "coffee.png")


@needs_ray
@check_models
def test_ray_extraction_gives_the_vectors_of_extract_features(lite0_headless, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from helpers.scale import extract_features_ray, read_parquet, start_ray, write_parquet

    photos = list_images(IMAGES)[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    sources = [photos[0], broken, *photos[1:]]  # the broken file shares a batch with a good one
    folder = tmp_path / "features"
    folder.mkdir()
    pq.write_table(pa.table({"path": ["stale.png"]}), folder / "from_an_earlier_run.parquet")
    start_ray(num_cpus=2)
    try:
        write_parquet(extract_features_ray(sources, batch_size=2, workers=1), folder)
    finally:
        ray.shutdown()
    got = read_parquet(folder, model_name=lite0_headless.name)
    assert got.sources == sorted(str(s) for s in sources)  # the earlier run's file is gone
    expected = extract_features(lite0_headless, sources, backend="fastest")  # FeatureExtractor's backend
    rows = [got.sources.index(str(s)) for s in sources]
    assert [got.errors[r] for r in rows] == expected.errors
    assert "broken.jpg" in got.errors[rows[1]] and np.isnan(got.vectors[rows[1]]).all()
    np.testing.assert_allclose(got.vectors[rows][expected.ok], expected.vectors[expected.ok], atol=1e-5)
    assert (got.model_name, got.pooling) == (lite0_headless.name, "avg")
    with pytest.raises(ValueError, match="made by 'efficientnet_lite0', not 'xception'"):
        read_parquet(tmp_path / "features", model_name="xception")
