import numpy as np
import pytest

from helpers import (Features, SimilarityIndex, cosine_similarity, extract_features, find_near_duplicates, list_images,
                     load_model, model_spec, rank_by_similarity)
from helpers.images import edited_copies
from helpers.similarity import pair_scores, precision_recall
from support import DEV, IMAGES, needs_dev, check_models

LITE0_THRESHOLD = model_spec("efficientnet_lite0").near_duplicate_threshold

# Photos in images/ that show the same scene: a byte copy, and a stereo pair.
SAME_SCENE = [{"flower.jpg", "花.jpg"}, {"motorcycle_left.png", "motorcycle_right.png"}]


def _scene(name):
    return next((group for group in SAME_SCENE if name in group), {name})


def test_cosine_similarity_and_ranking_on_small_vectors():
    gallery = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    assert cosine_similarity([1, 0], gallery) == pytest.approx([1, 0, 0.7071068, -1])
    assert cosine_similarity(gallery[:2], gallery).shape == (2, 4)
    assert rank_by_similarity(np.array([1, 0.1]), gallery, list("abcd"), top=2) == \
        [("a", pytest.approx(0.995037)), ("c", pytest.approx(0.7739573))]


def test_failed_rows_are_refused_with_advice():
    with pytest.raises(ValueError, match="features.valid"):
        cosine_similarity([1, 0], np.array([[1, 0], [np.nan, np.nan]]))


def test_edited_copies_rank_above_every_other_photo(lite0_headless):
    files = list_images(IMAGES)
    edits = ({"mirror": True}, {"keep": 0.8}, {"brightness": 1.3})
    sources, photo_ids = edited_copies(files, edits)
    gallery = extract_features(lite0_headless, sources).vectors
    photo_of = [files[p].name for p in photo_ids]  # the photo each gallery row shows
    for i, f in enumerate(files):
        scores = cosine_similarity(gallery[i], gallery)
        own_copies = [s for j, s in enumerate(scores) if j >= len(files) and photo_of[j] == f.name]
        others = [s for j, s in enumerate(scores) if photo_of[j] not in _scene(f.name)]
        assert len(own_copies) == len(edits) and min(own_copies) > max(others), f.name


@pytest.mark.parametrize("block_rows", [1, 7, 64, 1000])
def test_blockwise_search_equals_brute_force(block_rows):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    gallery[100] = gallery[200] = gallery[250] = gallery[5]  # exact ties
    queries = np.vstack([gallery[5], rng.normal(size=(4, 16))]).astype(np.float32)
    names = [f"img{i}" for i in range(len(gallery))]
    index = SimilarityIndex(gallery, names, block_rows=block_rows)
    for q, found in zip(queries, index.search(queries, top=10)):
        expected = rank_by_similarity(q, gallery, names, top=10)
        assert [n for n, _ in found] == [n for n, _ in expected]
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-6)
    assert [n for n, _ in index.search(queries[0], top=3)] == ["img5", "img100", "img200"]
    assert len(index.search(queries[0], top=1000)) == 300


def test_near_duplicates_in_images_are_the_copy_and_the_stereo_pair(lite0_headless):
    features = extract_features(lite0_headless, list_images(IMAGES))
    pairs = find_near_duplicates(features, LITE0_THRESHOLD)
    assert [{a.split("/")[-1], b.split("/")[-1]} for a, b, _ in pairs] == SAME_SCENE
    assert pairs[0][2] == pytest.approx(1.0, abs=1e-5) and pairs[1][2] > LITE0_THRESHOLD


def test_near_duplicates_explain_a_missing_threshold():
    # A Keras model's record has no calibrated threshold: passing it on gives advice, not a TypeError.
    with pytest.raises(ValueError, match="no calibrated near-duplicate threshold .* pass a number"):
        find_near_duplicates(np.eye(3), model_spec("vgg16").near_duplicate_threshold, list("abc"))
    int8 = Features(np.eye(3, dtype=np.float32), list("abc"), [None] * 3, "efficientnet_lite0", "avg", "int8")
    with pytest.raises(ValueError, match="these features are int8: the near-duplicate thresholds are calibrated"):
        find_near_duplicates(int8, LITE0_THRESHOLD)
    assert find_near_duplicates(np.array([[1, 0], [1, 0.01], [0, 1]]), 0.9, list("abc")) == \
        [("a", "b", pytest.approx(0.99995))]


@pytest.fixture(scope="module")
def edited_dev_photos():
    """Dev photos, then their copies with the edits the thresholds were calibrated on (made once
    for the three models), and the photo each of them shows.

    The first 250 photos (ImageNet classes 0-498: 199 animals, 51 objects), where
    different photos look most alike: of the different-photo pairs of all 500 that score within
    0.05 of a model's threshold, they hold 22 of 25, the closest pair of each model among them."""
    return edited_copies(list_images(DEV)[:250])


@needs_dev
@pytest.mark.parametrize("name, least_recall", [("efficientnet_lite0", 0.955),
                                                pytest.param("efficientnet_lite1", 0.96, marks=check_models),
                                                pytest.param("efficientnet_lite2", 0.87, marks=check_models)])
def test_registry_thresholds_on_edited_dev_photos(edited_dev_photos, name, least_recall):
    # Measured on these 250 photos: precision 1.0 (no different-photo pair at the threshold or above)
    # and recall 0.967, 0.984 and 0.909 (on all 500: 0.955, 0.975 and 0.889).
    sources, photo_ids = edited_dev_photos
    # On the engine (LiteRT, equal to Keras to about 1e-3), as the thresholds were calibrated: 3 times faster.
    scores, same = pair_scores(extract_features(load_model(name, include_top=False), sources, backend="fastest"), photo_ids)
    precision, recall = precision_recall(scores, same, model_spec(name).near_duplicate_threshold)
    print(f"{name} near-duplicates on {photo_ids.max() + 1} dev photos: precision {precision:.4f}, recall {recall:.4f}")
    assert precision >= 0.999 and recall >= least_recall


def test_query_shapes_top_and_names_are_checked():
    gallery = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    names = list("abc")
    assert rank_by_similarity(gallery[:1], gallery, names, top=1) == [("a", pytest.approx(1.0))]  # (1, D)
    with pytest.raises(ValueError, match="SimilarityIndex"):
        rank_by_similarity(gallery[:2], gallery, names)
    with pytest.raises(ValueError, match="top must be at least 1"):
        rank_by_similarity(gallery[0], gallery, names, top=0)
    with pytest.raises(ValueError, match="top must be at least 1"):
        SimilarityIndex(gallery, names).search(gallery[0], top=-1)
    with pytest.raises(ValueError, match="2 names for 3 feature vectors"):
        SimilarityIndex(gallery, names[:2])
    with pytest.raises(ValueError, match="pooling='avg'"):
        rank_by_similarity(gallery[0], np.zeros((3, 2, 2, 2)), names)
    with pytest.raises(ValueError, match=r"one query vector \(D,\) or many \(Q, D\), got shape \(1, 2, 2\)"):
        SimilarityIndex(gallery, names).search(np.zeros((1, 2, 2)))
    assert SimilarityIndex(np.zeros((0, 2)), []).search(gallery[:2], top=3) == [[], []]
