"""Command line: ``python -m helpers classify|similar|duplicates ...`` (``--help`` for each)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .classify import classify
from .engine import BACKENDS, PRECISIONS
from .explain import EXPLAINERS, class_probabilities, squashed
from .features import extract_features
from .images import ImageLoadError, list_images, overlay
from .labels import imagenet_classes
from .matching import find_edited_copies
from .models import DEFAULT_MODEL, available_models, load_model, model_spec
from .similarity import find_near_duplicates, rank_by_similarity

# Where int8 calibrates by default: the photos that come with a clone of the project.
PROJECT_PHOTOS = Path(__file__).resolve().parents[1] / "images"


def _expand(paths: list[str]) -> list[str]:
    files = []
    for p in paths:
        files += [str(f) for f in list_images(p)] if Path(p).is_dir() else [p]
    return files


def _classify(args) -> int:
    sources = _expand(args.images)
    results = classify(load_model(args.model), sources, top=args.top, backend=args.backend,
                       precision=args.precision, calibration=args.calibration)
    if args.json:
        print(json.dumps([{"image": r.source,
                           "predictions": [{"wnid": w, "label": lab, "score": round(s, 6)} for w, lab, s in r.predictions],
                           "error": r.error} for r in results], ensure_ascii=False, indent=1))
    else:
        for r in results:
            print(r.source)
            if r.error:
                print(f"  error: {r.error}")
            for rank, (_, label, score) in enumerate(r.predictions, 1):
                print(f"  {rank}. {label:<24} {score:.3f}")
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"could not classify {r.error}", file=sys.stderr)
    return 2 if failed else 0


def _report_unreadable(features) -> bool:
    """Print each source that failed on stderr; True when any did."""
    for error in features.errors:
        if error:
            print(f"could not read {error}", file=sys.stderr)
    return not features.ok.all()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _similar(args) -> int:
    files = [f for f in list_images(args.folder) if f.resolve() != Path(args.query).resolve()]
    if not files:
        raise FileNotFoundError(f"{args.folder}: no images besides the query to compare with")
    net = load_model(args.model, include_top=False)
    query = extract_features(net, [args.query], backend=args.backend, precision=args.precision,
                             calibration=args.calibration)
    if _report_unreadable(query):
        return 2
    gallery = extract_features(net, [str(f) for f in files], backend=args.backend, precision=args.precision,
                               calibration=args.calibration)
    failed = _report_unreadable(gallery)
    ranking = rank_by_similarity(query.vectors[0], gallery.valid(), top=args.top)
    if args.json:
        print(json.dumps([{"image": name, "score": round(score, 6)} for name, score in ranking],
                         ensure_ascii=False, indent=1))
    else:
        for rank, (name, score) in enumerate(ranking, 1):
            print(f"{rank:3}. {score:.3f}  {name}")
    return 2 if failed else 0


def _duplicates(args) -> int:
    files = list_images(args.folder)
    spec = model_spec(args.model)
    threshold = spec.near_duplicate_threshold if args.threshold is None else args.threshold
    floor = spec.near_duplicate_floor if args.floor is None else args.floor
    if threshold is None:
        raise ValueError(f"{args.model} has no calibrated near-duplicate threshold: pass --threshold (e.g. 0.8)")
    if args.fast and args.floor is not None:
        raise ValueError("--floor is for the keypoint check, which --fast skips: pass one or the other")
    if floor is None and not args.fast:
        raise ValueError(f"{args.model} has no calibrated floor for the keypoint check: pass --floor (e.g. 0.3), "
                         "or --fast to compare vectors only")
    if args.precision != "float32" and (args.threshold is None or (args.floor is None and not args.fast)):
        raise ValueError(f"the near-duplicate threshold and floor of {args.model} are calibrated on float32 "
                         f"features, not {args.precision}: pass --threshold and --floor (or --fast), "
                         "or leave out --precision")
    features = extract_features(load_model(args.model, include_top=False), [str(f) for f in files],
                                backend=args.backend, precision=args.precision, calibration=args.calibration)
    failed = _report_unreadable(features)
    valid = features.valid()
    # Plain vectors (the int8 check is above): the threshold and floor are the calibrated ones, or the user's own.
    if args.fast:
        pairs = find_near_duplicates(valid.vectors, threshold, valid.sources)
    else:
        pairs = find_edited_copies(valid.vectors, threshold, floor, valid.sources)
    if args.json:
        print(json.dumps([{"a": a, "b": b, "score": round(score, 6)} for a, b, score in pairs],
                         ensure_ascii=False, indent=1))
    else:
        for a, b, score in pairs:
            print(f"{score:.3f}  {a}  {b}")
    return 2 if failed else 0


def _explain(args) -> int:
    from PIL import Image

    folder = Path(args.output).resolve().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder for the output {args.output}")
    net = load_model(args.model)
    target = int(args.class_) if args.class_ is not None and args.class_.isdigit() else args.class_
    if target is None:  # name the top class in the report
        target = int(class_probabilities(net, squashed(net, args.image))[0].argmax())
    heatmap = EXPLAINERS[args.method](net, args.image, target)
    Image.fromarray(overlay(args.image, heatmap)).save(args.output)
    label = target if isinstance(target, str) else imagenet_classes()[target][1]
    print(f"{args.method} for {label!r} on {args.image}: wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="top-k ImageNet labels for images or folders of images")
    c.add_argument("images", nargs="+", help="image files or folders")
    c.add_argument("--top", type=_positive, default=5)
    c.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    c.set_defaults(run=_classify)
    s = sub.add_parser("similar", help="rank the images of a folder by similarity to a query image")
    s.add_argument("query", help="the query image")
    s.add_argument("folder", help="the folder of images to rank (the query itself is left out)")
    s.add_argument("--top", type=_positive, default=10)
    s.add_argument("--json", action="store_true", help="print a JSON list of {image, score}, best first")
    s.set_defaults(run=_similar)
    d = sub.add_parser("duplicates", help="pairs of near-duplicate images in a folder: close feature vectors, "
                                          "or keypoints that agree (edited copies)")
    d.add_argument("folder")
    d.add_argument("--threshold", type=float, default=None,
                   help="cosine similarity for a pair to count (default: calibrated for the model)")
    d.add_argument("--floor", type=float, default=None,
                   help="least cosine similarity of a pair the keypoint check may confirm (default: calibrated)")
    d.add_argument("--fast", action="store_true",
                   help="compare feature vectors only: finds lightly edited copies (mirrored, brighter, smaller), "
                        "not tight crops, tilts, grayscale or captions; several times faster")
    d.add_argument("--json", action="store_true", help="print a JSON list of {a, b, score}, highest first")
    d.set_defaults(run=_duplicates)
    e = sub.add_parser("explain", help="write an image with a heatmap of where the model sees a class")
    e.add_argument("image")
    e.add_argument("--method", default="gradcam", choices=list(EXPLAINERS))
    e.add_argument("--class", dest="class_", metavar="LABEL_OR_INDEX",
                   help="an ImageNet label (espresso) or index (967); default: the top predicted class")
    e.add_argument("-o", "--output", required=True, help="the PNG to write")
    e.set_defaults(run=_explain)
    for command in (c, s, d, e):
        command.add_argument("--model", default=DEFAULT_MODEL, choices=available_models())
    for command in (c, s, d):
        command.add_argument("--backend", choices=BACKENDS, default="fastest",
                             help="keras: the Keras model; litert: the same model converted to LiteRT, about "
                                  "twice as fast on a CPU; fastest: litert when installed (default)")
        command.add_argument("--precision", choices=PRECISIONS, default="float32",
                             help="int8: faster again on LiteRT, top-1 within a point (default: float32)")
        command.add_argument("--calibration", metavar="FOLDER",
                             default=str(PROJECT_PHOTOS) if PROJECT_PHOTOS.is_dir() else None,
                             help="int8 only: photos like yours to calibrate on (default: the project's images/)")
    args = parser.parse_args(argv)
    if getattr(args, "precision", None) == "int8" and args.calibration is None:
        parser.error("--precision int8 calibrates on photos like yours: pass --calibration FOLDER "
                     "(a few dozen photos, never the ones you classify to measure accuracy)")
    # File names that are not valid in the terminal's encoding are printed escaped, not a crash.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        return args.run(args)
    except (FileNotFoundError, ImageLoadError, ValueError, RuntimeError) as e:
        # a missing folder or image, a wrong label, no threshold, no weights
        print(f"error: {e}", file=sys.stderr)
        return 2
