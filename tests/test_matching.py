import numpy as np
import pytest

from helpers import ImageLoadError, edit
from helpers.matching import MIN_INLIERS, count_inliers, local_features
from support import IMAGES


def test_local_features_resize_the_photo_and_keep_the_strongest_points():
    features = local_features(IMAGES / "chelsea.png", max_side=300, max_points=200)
    assert max(features.size) == 300 and 0 < len(features) <= 200
    assert features.points.shape == (len(features), 2) and features.descriptors.shape == (len(features), 128)
    assert (features.points >= 0).all() and (features.points < features.size).all()
    orb = local_features(IMAGES / "chelsea.png", method="orb")
    assert orb.descriptors.dtype == np.uint8 and orb.descriptors.shape[1] == 32
    flat = local_features(np.full((50, 80, 3), 128, np.uint8))
    assert len(flat) == 0 and count_inliers(flat, features) == 0


@pytest.mark.parametrize("edits", [{"rotate": -9}, {"keep": 0.55, "position": (1, 0)}, {"grayscale": True},
                                   {"scale": 0.3, "jpeg_quality": 50}, {"caption": "holiday", "keep": 0.6}])
def test_a_heavily_edited_copy_is_verified(edits):
    photo = local_features(IMAGES / "coffee.png")
    assert count_inliers(photo, local_features(edit(IMAGES / "coffee.png", **edits))) >= 2 * MIN_INLIERS


def test_different_photos_are_not_verified():
    photos = [local_features(IMAGES / name) for name in ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png")]
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    assert max(count_inliers(photos[i], photos[j]) for i, j in pairs) < MIN_INLIERS // 2


def test_bad_inputs_raise_clear_errors(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    with pytest.raises(ImageLoadError, match="broken.jpg: not an image"):
        local_features(broken)
    with pytest.raises(ValueError, match="method must be one of sift, orb; got 'surf'"):
        local_features(IMAGES / "coffee.png", method="surf")


def test_votes_and_nearest_vectors_propose_each_photo_with_its_partners():
    from helpers.matching import nearest_candidates, vote_candidates

    photos = [local_features(IMAGES / name) for name in ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png")]
    photos.append(local_features(edit(IMAGES / "chelsea.png", keep=0.6, rotate=5)))
    proposed = vote_candidates(photos, top=1)
    assert (1, 4) in proposed and all(i < j for i, j in proposed)  # the copy's most voted partner: its photo
    assert vote_candidates(photos[:1]) == set()  # nothing to vote for
    unit = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1], [0, 0.1, 1]], np.float32)
    assert nearest_candidates(unit, top=1) == {(0, 1), (2, 3)}
    assert nearest_candidates(unit, top=5) == {(i, j) for i in range(4) for j in range(i + 1, 4)}
    assert nearest_candidates(unit[:1]) == set()


def test_edited_copies_are_found_where_vectors_alone_miss_them(lite0_headless, tmp_path):
    from helpers import extract_features, find_near_duplicates, list_images
    from helpers.matching import find_edited_copies

    spec = lite0_headless.spec
    heavy = {"coffee.png": {"keep": 0.55, "rotate": 7, "grayscale": True},
             "rocket.jpg": {"scale": 0.3, "caption": "shared via app", "jpeg_quality": 50},
             "chelsea.png": {"keep": 0.6, "position": (0, 1), "watermark": "(c) Photo Club"}}
    for name, changes in heavy.items():
        edit(IMAGES / name, **changes).save(tmp_path / f"copy of {name}.jpg")
    sources = [str(p) for p in list_images(IMAGES)] + [str(tmp_path / f"copy of {n}.jpg") for n in heavy]
    features = extract_features(lite0_headless, sources)
    by_vectors = find_near_duplicates(features, spec.near_duplicate_threshold)
    found = find_edited_copies(features, spec.near_duplicate_threshold, spec.near_duplicate_floor)
    copies = {(str(IMAGES / n), str(tmp_path / f"copy of {n}.jpg")) for n in heavy}
    assert not copies & {(a, b) for a, b, _ in by_vectors}  # the vectors alone miss every copy
    assert {(a, b) for a, b, _ in found} == {(a, b) for a, b, _ in by_vectors} | copies  # and nothing else is added
    assert [s for *_, s in found] == sorted([s for *_, s in found], reverse=True)
    with pytest.raises(ValueError, match="floor is None"):
        find_edited_copies(features, spec.near_duplicate_threshold, None)
    with pytest.raises(ValueError, match="2 photos for 16 feature vectors"):
        find_edited_copies(features, spec.near_duplicate_threshold, 0.3, photos=sources[:2])
    assert len(found) == len({(a, b) for a, b, _ in found})  # no pair twice
    # A photo that cannot be read again keeps only its vector pairs; a name that is no file asks for photos=.
    (tmp_path / "copy of rocket.jpg.jpg").write_text("overwritten since")
    found = find_edited_copies(features, spec.near_duplicate_threshold, spec.near_duplicate_floor)
    assert {(a, b) for a, b, _ in found} == {(a, b) for a, b, _ in by_vectors} | (copies - {
        (str(IMAGES / "rocket.jpg"), str(tmp_path / "copy of rocket.jpg.jpg"))})
    (tmp_path / "copy of rocket.jpg.jpg").unlink()
    with pytest.raises(ValueError, match="copy of rocket.jpg.jpg: no such file to find keypoints in; pass photos="):
        find_edited_copies(features, spec.near_duplicate_threshold, spec.near_duplicate_floor)


def test_photos_in_memory_are_told_apart_by_their_rows(lite0_headless):
    from helpers import extract_features, load_image
    from helpers.matching import find_edited_copies

    # Pictures made in memory all have the same name: pairs must still come from the right rows.
    photos = [load_image(IMAGES / "coffee.png"), edit(IMAGES / "coffee.png", mirror=True),
              load_image(IMAGES / "chelsea.png"), edit(IMAGES / "chelsea.png", keep=0.55, rotate=-8, grayscale=True)]
    features = extract_features(lite0_headless, photos)
    names = ["coffee", "coffee mirrored", "chelsea", "chelsea tilted"]
    spec = lite0_headless.spec
    found = find_edited_copies(features.vectors, spec.near_duplicate_threshold, spec.near_duplicate_floor, names,
                               photos=photos)
    assert [(a, b) for a, b, _ in found] == [("coffee", "coffee mirrored"), ("chelsea", "chelsea tilted")]
    unnamed = find_edited_copies(features, spec.near_duplicate_threshold, spec.near_duplicate_floor, photos=photos)
    assert [score for *_, score in unnamed] == [score for *_, score in found]
    with pytest.raises(ValueError, match="<ndarray>: no such file to find keypoints in; pass photos="):
        find_edited_copies(features, spec.near_duplicate_threshold, spec.near_duplicate_floor)
