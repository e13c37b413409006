"""Command line: ``python -m helpers classify IMAGE... [--model NAME] [--top K] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .classify import classify
from .images import list_images
from .models import available_models, load_model


def _expand(paths: list[str]) -> list[str]:
    files = []
    for p in paths:
        files += [str(f) for f in list_images(p)] if Path(p).is_dir() else [p]
    return files


def _classify(args) -> int:
    try:
        sources = _expand(args.images)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = classify(load_model(args.model), sources, top=args.top)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="top-k ImageNet labels for images or folders of images")
    c.add_argument("images", nargs="+", help="image files or folders")
    c.add_argument("--model", default="efficientnet_lite0", choices=available_models())
    c.add_argument("--top", type=int, default=5)
    c.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    args = parser.parse_args(argv)
    return _classify(args)
