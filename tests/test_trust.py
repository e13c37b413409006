import numpy as np
import pytest
from scipy.special import softmax

from helpers import (VIEWS, acceptance_threshold, apply_temperature, classify, crop_views, expected_calibration_error,
                     fit_temperature, predict_views, rejection_quality, reliability_table)
from support import IMAGES


def _toy(n: int, sharpen: float, seed: int = 0):
    """A 4-class toy model: labels drawn from softmax(logits), so softmax(logits) is calibrated;
    the model reports softmax(sharpen * logits), over-confident for sharpen > 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 4))
    truth = softmax(logits, axis=1)
    labels = np.array([rng.choice(4, p=row) for row in truth])
    return softmax(sharpen * logits, axis=1), labels


def _nll(p, y):
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def test_ece_by_hand_on_a_small_case():
    # Bins of 0.25: (0.5, 0.75] holds 0.6 (right) and 0.7 (wrong): confidence 0.65, accuracy 0.5;
    # (0.75, 1] holds 0.8, 0.9 and 1.0, all right: confidence 0.9, accuracy 1.
    p = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9], [1.0, 0.0]])
    labels = np.array([0, 0, 0, 1, 0])
    expected = (2 * abs(0.5 - 0.65) + 3 * abs(1 - 0.9)) / 5
    assert expected_calibration_error(p, labels, bins=4) == pytest.approx(expected)
    table = reliability_table(p, labels, bins=4)
    assert table.counts.tolist() == [0, 0, 2, 3]
    np.testing.assert_allclose(table.accuracy[2:], [0.5, 1.0])
    assert np.isnan(table.confidence[:2]).all()


def test_ece_is_zero_when_confidence_is_accuracy_and_large_when_sure_and_wrong():
    # Ten photos at 0.7, seven right: one bin, no gap.
    p = np.array([[0.7, 0.3]] * 10)
    assert expected_calibration_error(p, np.array([0] * 7 + [1] * 3)) == pytest.approx(0)
    assert expected_calibration_error(np.array([[0.99, 0.01]] * 4), np.array([1] * 4)) == pytest.approx(0.99)


def test_a_calibrated_toy_model_has_a_small_ece_and_a_temperature_near_one():
    p, labels = _toy(4000, sharpen=1.0)
    assert expected_calibration_error(p, labels) < 0.03
    assert fit_temperature(p, labels) == pytest.approx(1.0, abs=0.1)


def test_temperature_scaling_repairs_an_over_confident_toy_model_on_photos_it_was_not_fitted_on():
    val, val_labels = _toy(4000, sharpen=3.0, seed=1)
    test, test_labels = _toy(4000, sharpen=3.0, seed=2)
    temperature = fit_temperature(val, val_labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    after = apply_temperature(test, temperature)
    assert _nll(after, test_labels) < _nll(test, test_labels) - 0.2
    before_ece = expected_calibration_error(test, test_labels)
    after_ece = expected_calibration_error(after, test_labels)
    calibrated = expected_calibration_error(*_toy(4000, sharpen=1.0, seed=2))  # the true probabilities' ECE
    assert before_ece > 0.2 and after_ece < calibrated + 0.02
    assert (after.argmax(axis=1) == test.argmax(axis=1)).all()  # the top class never changes


def test_an_under_confident_model_gets_a_temperature_below_one():
    p, labels = _toy(2000, sharpen=0.4, seed=3)
    assert fit_temperature(p, labels) == pytest.approx(0.4, rel=0.15)


def test_apply_temperature_is_the_softmax_of_scaled_logits_and_one_changes_nothing():
    logits = np.random.default_rng(0).normal(0, 3, (20, 5))
    p = softmax(logits, axis=1)
    np.testing.assert_allclose(apply_temperature(p, 2.5), softmax(logits / 2.5, axis=1), atol=1e-12)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-12)
    # A float32 softmax that underflowed to 0 still gives finite probabilities.
    assert np.isfinite(apply_temperature(np.array([[1.0, 0.0, 0.0]], np.float32), 3.0)).all()


@pytest.mark.parametrize("probabilities, labels, message", [
    (np.array([0.5, 0.5]), None, "probabilities must be an array"),
    (np.array([[0.5, 0.6]]), None, "row 0 sums to 1.1"),
    (np.array([[1.2, -0.2]]), None, "row 0 holds a negative number"),
    (np.array([[0.5, 0.5]]), np.array([2]), "labels must be 1 integer class indices in 0..1"),
    (np.array([[0.5, 0.5]]), np.array([0.0]), "labels must be"),
    (np.array([[0.5, 0.5]] * 2), np.array([0]), "one per row of probabilities"),
])
def test_bad_probabilities_or_labels_are_named(probabilities, labels, message):
    with pytest.raises(ValueError, match=message):
        if labels is None:
            apply_temperature(probabilities, 2.0)
        else:
            expected_calibration_error(probabilities, labels)


def test_no_temperature_fits_when_every_validation_photo_is_right():
    with pytest.raises(ValueError, match="no temperature fits these 50 validation photos.*100% of them answered right"):
        fit_temperature(np.array([[0.7, 0.2, 0.1]] * 50), np.zeros(50, dtype=int))


def test_a_nan_row_is_named_with_what_to_do():
    with pytest.raises(ValueError, match="row 1 holds NaN .* keep only the rows whose error is None"):
        expected_calibration_error(np.array([[0.5, 0.5], [np.nan, np.nan]]), np.array([0, 1]))


def test_a_confidence_on_a_bin_edge_falls_in_the_bin_below_it_as_scikit_learn_bins():
    # 0.6 with 5 bins: bin (0.4, 0.6], whatever the rounding of the edge 0.6000000000000001.
    table = reliability_table(np.array([[0.6, 0.4], [0.4, 0.6]]), np.array([0, 1]), bins=5)
    assert table.counts.tolist() == [0, 0, 2, 0, 0]


def test_bad_temperature_and_bins_are_named():
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        apply_temperature([[0.5, 0.5]], 0)
    with pytest.raises(ValueError, match="bins must be at least 1"):
        reliability_table([[0.5, 0.5]], [0], bins=0)


def test_acceptance_threshold_accepts_at_least_the_share_asked():
    scores = np.random.default_rng(0).normal(size=1000)
    for accept in (0.5, 0.9, 0.95, 0.99, 1.0):
        threshold = acceptance_threshold(scores, accept)
        assert accept <= np.mean(scores >= threshold) <= accept + 0.002
    with pytest.raises(ValueError, match="accept must be a share"):
        acceptance_threshold(scores, 95)
    with pytest.raises(ValueError, match="scores must be a non-empty"):
        acceptance_threshold([], 0.9)


def test_rejection_quality_of_a_perfect_and_of_a_useless_score():
    perfect = rejection_quality([0.9, 0.8, 0.7], [0.2, 0.1], threshold=0.5)
    assert (perfect.auroc, perfect.accepted_in, perfect.rejected_out) == (1.0, 1.0, 1.0)
    useless = rejection_quality([0.5] * 4, [0.5] * 3, threshold=0.5)
    assert (useless.auroc, useless.accepted_in, useless.rejected_out) == (0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="out_scores must be"):
        rejection_quality([0.5], [np.nan], threshold=0.5)


def test_crop_views_cut_the_centre_its_mirror_and_the_corners():
    photo = np.random.default_rng(0).uniform(0, 255, (10, 12, 3))
    views = crop_views(photo, (6, 8), VIEWS)
    assert views.shape == (6, 6, 8, 3)
    np.testing.assert_array_equal(views[0], photo[2:8, 2:10])
    np.testing.assert_array_equal(views[1], photo[2:8, 2:10][:, ::-1])
    np.testing.assert_array_equal(views[2], photo[:6, :8])
    np.testing.assert_array_equal(views[3], photo[:6, 4:])
    np.testing.assert_array_equal(views[4], photo[4:, :8])
    np.testing.assert_array_equal(views[5], photo[4:, 4:])
    with pytest.raises(ValueError, match="views must be one or more of center, mirror"):
        crop_views(photo, (6, 8), ["flip"])
    with pytest.raises(ValueError, match="smaller than the crops"):
        crop_views(photo, (16, 8))


def test_predict_views_averages_the_views_and_keeps_going_past_a_bad_photo(tiny_net, tmp_path):
    net = tiny_net()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    photo = np.random.default_rng(0).uniform(0, 255, (48, 40, 3)).astype(np.uint8)
    outputs, errors = predict_views(net, [photo, broken, photo], views=["center", "mirror"], batch_size=2)
    assert outputs.shape == (3, 5) and np.isnan(outputs[1]).all() and "broken.jpg" in errors[1]
    assert errors[0] is None and errors[2] is None
    np.testing.assert_allclose(outputs[0], outputs[2])
    # By hand: the photo's centre square at 32 / 0.875 = 37 pixels, its two views, the mean of the model's outputs.
    from helpers import load_image

    larger = load_image(photo, size=37, crop_fraction=1.0)
    by_hand = net.model.predict_on_batch(net.preprocess(crop_views(larger, (32, 32), ["center", "mirror"])))
    np.testing.assert_allclose(outputs[0], np.asarray(by_hand).mean(axis=0), atol=1e-6)
    # Nothing loads: one NaN row per source, each with its error, as extract_features gives them.
    outputs, errors = predict_views(net, [broken, broken])
    assert outputs.shape == (2, 5) and np.isnan(outputs).all() and all("broken.jpg" in e for e in errors)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        predict_views(net, [photo], batch_size=0)


def test_predict_views_centre_crop_gives_classify_answer(lite0):
    photos = [IMAGES / "coffee.png", IMAGES / "animals" / "zebra.png", IMAGES / "chelsea.png"]
    outputs, errors = predict_views(lite0, photos, views=["center"])
    results = classify(lite0, photos, top=1)
    for output, result in zip(outputs, results):
        assert result.predictions[0][2] == pytest.approx(float(output.max()), abs=0.05)
    assert [r.predictions[0][1] for r in results[:2]] == ["espresso", "zebra"]
    assert outputs[:2].argmax(axis=1).tolist() == [967, 340]  # espresso, zebra
