"""How far to trust a score: calibration, temperature scaling, "none of these", and a second look.

A classifier's top probability is its *confidence*. A model is *calibrated* when its
confidence is its accuracy: of the photos it gives about 0.8, about 80% are right.
``reliability_table`` and ``expected_calibration_error`` measure that; ``fit_temperature``
and ``apply_temperature`` repair the commonest fault, over-confidence, with one number
(Guo et al., "On calibration of modern neural networks", 2017). ``acceptance_threshold``
and ``rejection_quality`` let a model answer "none of these" for photos unlike its training
photos. Plain numpy and scipy: any classifier's probabilities will do. (Test-time
augmentation, a second look at each photo, is ``classify.predict_views``.)

scikit-learn's ``calibration_curve`` draws the same reliability curve (``plots.show_reliability``
uses its ``CalibrationDisplay``), but it drops empty bins and returns no counts, and the
error below weighs each bin by its count; its ``CalibratedClassifierCV`` refits a
scikit-learn estimator and has no temperature scaling for a Keras model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

# Temperatures ``fit_temperature`` searches between (a softmax barely changes outside them).
TEMPERATURE_RANGE = (0.05, 20.0)


def check_probabilities(probabilities, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``probabilities`` as float64 (N, classes) rows that sum to 1, ``labels`` as int (N,) class indices.

    Raises:
        ValueError: naming the argument and what is wrong with it.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be an array (N, classes) with N >= 1 and 2 classes or more, "
                         f"got shape {p.shape}")
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | ~np.isclose(p.sum(axis=1), 1, atol=1e-3)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = ("holds NaN (a photo that could not be loaded? keep only the rows whose error is None)"
                if np.isnan(p[row]).any() else f"sums to {p[row].sum():.4g}" if (p[row] >= 0).all()
                else "holds a negative number")
        raise ValueError(f"probabilities must be rows that sum to 1 (a softmax output; for logits, pass "
                         f"scipy.special.softmax(logits, axis=1)): row {row} {what}")
    if labels is None:
        return p, None
    y = np.asarray(labels)
    if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any() or (y >= p.shape[1]).any():
        raise ValueError(f"labels must be {len(p)} integer class indices in 0..{p.shape[1] - 1}, one per row of "
                         f"probabilities; got shape {y.shape}, dtype {y.dtype}")
    return p, y


@dataclass
class Reliability:
    """Confidence against accuracy in equal-width bins of confidence, as ``reliability_table`` makes it.

    Attributes:
        edges: float (bins + 1,), the bins' edges from 0 to 1; bin i holds confidences
            in (edges[i], edges[i + 1]].
        counts: int (bins,), photos per bin.
        confidence: float (bins,), the bin's mean confidence; NaN for an empty bin.
        accuracy: float (bins,), the share of the bin's photos whose top class is right; NaN when empty.
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def reliability_table(probabilities, labels, bins: int = 15) -> Reliability:
    """Each photo's confidence (its top probability) and whether its top class is right, per bin.

    Args:
        probabilities: (N, classes), rows summing to 1.
        labels: int (N,), the true class of each row.
        bins: equal-width bins of confidence between 0 and 1.

    >>> table = reliability_table([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], [0, 1, 1], bins=2)
    >>> table.counts.tolist(), table.confidence.round(2).tolist(), table.accuracy.round(2).tolist()
    ([0, 3], [nan, 0.73], [nan, 0.67])
    """
    p, y = check_probabilities(probabilities, labels)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence, right = p.max(axis=1), p.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)  # bin i: (edges[i], edges[i + 1]], as scikit-learn bins
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):  # an empty bin's mean is NaN, as the docstring says
        mean_confidence = np.bincount(which, confidence, minlength=bins) / counts
        accuracy = np.bincount(which, right, minlength=bins) / counts
    return Reliability(edges, counts, mean_confidence, accuracy)


def expected_calibration_error(probabilities, labels, bins: int = 15) -> float:
    """The gap between confidence and accuracy, averaged over the bins weighted by their photos.

    ``sum over bins of count / N * |accuracy - mean confidence|``: 0 for a calibrated
    model, up to 1. A few photos per bin make it noisy: it needs hundreds of photos.

    Args:
        probabilities: (N, classes), rows summing to 1.
        labels: int (N,), the true class of each row.
        bins: equal-width bins of confidence between 0 and 1 (15, as Guo et al.).

    Two photos at 0.9, both right (a gap of 0.1), and two at 0.8, one right (a gap of 0.3):

    >>> expected_calibration_error([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.2, 0.8]], [0, 0, 1, 0], bins=10)
    0.2
    """
    table = reliability_table(probabilities, labels, bins)
    filled = table.counts > 0
    gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
    return float(np.sum(table.counts[filled] * gaps) / table.counts.sum())


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """The probabilities a softmax gives for the logits divided by ``temperature``.

    A temperature above 1 makes the probabilities less extreme, below 1 more; the top
    class never changes. It works from probabilities: their logarithm is the logits
    minus a constant per row, which the softmax ignores.

    Args:
        probabilities: (N, classes), rows summing to 1.
        temperature: a positive number, from ``fit_temperature``.

    Returns:
        float64 (N, classes), rows summing to 1.

    >>> apply_temperature([[0.8, 0.2]], 2.0).round(3)
    array([[0.667, 0.333]])
    """
    p, _ = check_probabilities(probabilities)
    if not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return softmax(_logs(p) / temperature, axis=1)


def fit_temperature(probabilities, labels) -> float:
    """The temperature that gives held-out photos their lowest negative log-likelihood.

    Fit it on validation photos the model did not train on, never on the test photos:
    the negative log-likelihood is the mean of minus the log of the true class's
    probability, the loss the model was trained with.

    Args:
        probabilities: (N, classes) of validation photos, rows summing to 1.
        labels: int (N,), their true classes.

    Returns:
        A temperature between 0.05 and 20: above 1 for an over-confident model.

    Raises:
        ValueError: the best temperature is at an end of that range, as when every
            validation photo is right (then the sharper the better, without end).

    A model 0.99 sure of ten photos, right about eight of them: the temperature brings 0.99 to 0.8.

    >>> confident = np.array([[0.99, 0.01]] * 8 + [[0.01, 0.99]] * 2)
    >>> temperature = fit_temperature(confident, [0] * 10)
    >>> round(temperature, 2), apply_temperature(confident, temperature)[0].round(2)
    (3.31, array([0.8, 0.2]))
    """
    p, y = check_probabilities(probabilities, labels)
    logs = _logs(p)

    def loss(log_temperature: float) -> float:
        return -float(np.mean(log_softmax(logs / np.exp(log_temperature), axis=1)[np.arange(len(y)), y]))

    low, high = np.log(TEMPERATURE_RANGE)
    best = minimize_scalar(loss, bounds=(low, high), method="bounded").x
    if min(best - low, high - best) < 1e-3:
        right = np.mean(p.argmax(axis=1) == y)
        raise ValueError(f"no temperature fits these {len(y)} validation photos: the best is at the end of "
                         f"{TEMPERATURE_RANGE} ({right:.0%} of them answered right); use more validation photos, "
                         f"with some the model gets wrong")
    return float(np.exp(best))


def _logs(p: np.ndarray) -> np.ndarray:
    """log p, with 0 (a float32 softmax's underflow) as the smallest float32 instead of -inf."""
    return np.log(np.maximum(p, np.finfo(np.float32).tiny))


def check_scores(scores, name: str = "scores") -> np.ndarray:
    """``scores`` as float64 (N,), N >= 1, all finite; else a ValueError that names the argument."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0 or not np.isfinite(scores).all():
        raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers, got shape {scores.shape}")
    return scores


def acceptance_threshold(scores, accept: float = 0.95) -> float:
    """The score that at least a share ``accept`` of in-distribution photos reach: accept at or above it.

    Args:
        scores: float (N,), one per validation photo of the classes the model knows,
            higher meaning more familiar (the top probability, for one).
        accept: the share of such photos to accept, for example 0.95.

    >>> acceptance_threshold(np.arange(1, 21) / 20, accept=0.9)
    0.15
    """
    scores = check_scores(scores)
    if not 0 < accept <= 1:
        raise ValueError(f"accept must be a share in (0, 1], got {accept!r}")
    # The lowest score left once the lowest (1 - accept) share is set aside (1e-9: 0.1 * 20 is 1.99...).
    rejected = int(np.floor((1 - accept) * len(scores) + 1e-9))
    return float(np.sort(scores)[min(rejected, len(scores) - 1)])


@dataclass
class Rejection:
    """How well a score tells familiar photos from unfamiliar ones, as ``rejection_quality`` measures it.

    Attributes:
        auroc: the chance that a random familiar photo scores above a random unfamiliar one
            (area under the ROC curve): 1 is perfect, 0.5 is a coin.
        accepted_in: the share of familiar photos at or above the threshold.
        rejected_out: the share of unfamiliar photos below it.
    """

    auroc: float
    accepted_in: float
    rejected_out: float


def rejection_quality(in_scores, out_scores, threshold: float) -> Rejection:
    """Measure a "none of these" rule: reject a photo whose score is below ``threshold``.

    Args:
        in_scores: float (N,), photos of the classes the model knows (not the ones the
            threshold was chosen on), higher meaning more familiar.
        out_scores: float (M,), photos of other things.
        threshold: from ``acceptance_threshold``.

    >>> rejection_quality([0.9, 0.8, 0.4], [0.5, 0.3], threshold=0.6)
    Rejection(auroc=0.833..., accepted_in=0.666..., rejected_out=1.0)
    """
    from sklearn.metrics import roc_auc_score  # here: scikit-learn takes half a second to import

    familiar, unfamiliar = check_scores(in_scores, "in_scores"), check_scores(out_scores, "out_scores")
    truth = np.r_[np.ones(len(familiar)), np.zeros(len(unfamiliar))]
    return Rejection(float(roc_auc_score(truth, np.r_[familiar, unfamiliar])),
                     float(np.mean(familiar >= threshold)), float(np.mean(unfamiliar < threshold)))
