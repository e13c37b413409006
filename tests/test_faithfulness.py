import keras
import numpy as np
import pytest

from helpers import deletion_curve, gradcam, insertion_curve, random_heatmap, randomization_check

TOP_LEFT = np.zeros((32, 32), np.float32)
TOP_LEFT[:16, :16] = 1


@pytest.fixture
def quadrant_model():
    """Two classes decided by the top-left quadrant alone: class 0 when neighbouring pixels
    there differ (fine stripes), class 1 when it is flat. Grey or blur takes the stripes
    away. A plain keras.Model, so it takes 0-255 input."""
    image = keras.Input((32, 32, 3))
    quadrant = keras.layers.Cropping2D(((0, 16), (0, 16)))(image)
    step = keras.layers.Conv2D(1, (1, 2), strides=(1, 2), use_bias=False)
    difference = step(quadrant)  # each pixel minus its right neighbour, channels averaged
    step.set_weights([np.stack([np.full((3, 1), 1 / 3), np.full((3, 1), -1 / 3)])[None].astype(np.float32)])
    energy = keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([difference, difference]))
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(energy)
    dense.set_weights([np.array([[1e-4, -1e-4]], np.float32), np.array([-3.25, 3.25], np.float32)])
    return keras.Model(image, outputs)


@pytest.fixture
def photo():
    """Black and white stripes one pixel wide in the top-left quadrant, random elsewhere."""
    pixels = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    pixels[:16, :16] = 0
    pixels[:16, 0:16:2] = 255
    return pixels


def test_deleting_what_the_model_uses_first_lowers_the_curve_faster(quadrant_model, photo):
    right = deletion_curve(quadrant_model, photo, TOP_LEFT)
    wrong = deletion_curve(quadrant_model, photo, 1 - TOP_LEFT)
    chance = deletion_curve(quadrant_model, photo, random_heatmap((32, 32), grid=None))
    assert right.auc < chance.auc < wrong.auc and wrong.auc - right.auc > 0.3
    # Once the quadrant is grey (a quarter of the pixels), class 0 is as unlikely as on a grey image.
    grey = float(quadrant_model(np.full((1, 32, 32, 3), 127.5, np.float32))[0, 0])
    assert grey < 0.01 and right.probabilities[right.fractions >= 0.25].max() == pytest.approx(grey, abs=1e-4)


def test_revealing_what_the_model_uses_first_raises_the_curve_faster(quadrant_model, photo):
    right = insertion_curve(quadrant_model, photo, TOP_LEFT)
    wrong = insertion_curve(quadrant_model, photo, 1 - TOP_LEFT)
    assert right.auc > wrong.auc + 0.2


def test_curves_run_from_the_photo_to_grey_and_from_blurred_to_the_photo(quadrant_model, photo):
    photo_probability = float(quadrant_model(photo[None])[0, 0])
    deletion = deletion_curve(quadrant_model, photo, TOP_LEFT, steps=8)
    assert deletion.class_index == 0  # the top class, as none was given
    np.testing.assert_allclose(deletion.fractions, np.linspace(0, 1, 9), atol=1e-6)
    assert deletion.probabilities[0] == pytest.approx(photo_probability, abs=1e-5)
    assert deletion.probabilities[-1] < 0.01  # all grey: no stripes
    insertion = insertion_curve(quadrant_model, photo, TOP_LEFT, class_index=1, steps=4, batch_size=2)
    assert insertion.class_index == 1 and len(insertion.probabilities) == 5
    assert insertion.probabilities[-1] == pytest.approx(1 - photo_probability, abs=1e-5)
    assert min(insertion.probabilities) <= insertion.auc <= max(insertion.probabilities)


def test_a_heatmap_of_the_photo_or_model_input_size_is_accepted_others_not(quadrant_model, photo):
    big = np.kron(photo, np.ones((2, 2, 1)))  # 64x64: heatmaps of the photo's size, or the input's (32x32)
    assert deletion_curve(quadrant_model, big, np.kron(TOP_LEFT, np.ones((2, 2)))).auc == pytest.approx(
        deletion_curve(quadrant_model, big, TOP_LEFT).auc, abs=0.02)
    with pytest.raises(ValueError, match=r"heatmap of shape \(7, 7\) fits neither the image \(64, 64\)"):
        deletion_curve(quadrant_model, big, np.zeros((7, 7)))
    with pytest.raises(ValueError, match="steps must be at least 1"):
        insertion_curve(quadrant_model, photo, TOP_LEFT, steps=0)


def test_random_heatmaps_are_reproducible_and_blobby_or_per_pixel():
    blobs, pixels = random_heatmap((60, 80), grid=7), random_heatmap((60, 80), grid=None)
    for heatmap in (blobs, pixels):
        assert heatmap.shape == (60, 80) and heatmap.dtype == np.float32
        assert 0 <= heatmap.min() and heatmap.max() <= 1
    np.testing.assert_array_equal(blobs, random_heatmap((60, 80), grid=7))
    assert not np.array_equal(blobs, random_heatmap((60, 80), grid=7, seed=1))
    # Neighbouring pixels: nearly equal within a blob, unrelated between single pixels.
    assert np.abs(np.diff(blobs, axis=1)).mean() < 0.1 < np.abs(np.diff(pixels, axis=1)).mean()


def test_randomization_check_flags_a_map_that_ignores_the_model(tiny_net, photo):
    net = tiny_net()
    weights = [w.copy() for w in net.model.get_weights()]

    def brightness(net, image, class_index):  # an "explanation" that never looks at the model
        return np.asarray(image, np.float32).mean(axis=-1) / 255

    check = randomization_check(net, photo, brightness, scrambled_layers=3)
    assert check.spearman == pytest.approx(1.0)
    assert check.layers == ["predictions", "conv1_bn", "conv1"]  # from the output down, weighted layers only
    for before, after in zip(weights, net.model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the model itself is untouched
    gradcam_check = randomization_check(net, photo, gradcam, scrambled_layers=1)
    assert not np.allclose(gradcam_check.original, gradcam_check.randomized)
    assert gradcam_check.spearman < check.spearman


def test_randomization_check_reaches_into_a_nested_base(tiny_net, photo):
    base = tiny_net(top=False).model
    image = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(image, training=False))
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax", name="classes")(x))
    check = randomization_check(model, photo, gradcam, class_index=0, scrambled_layers=2)
    assert check.layers == ["classes", "conv1_bn"]
    assert check.original.shape == check.randomized.shape == (32, 32)
