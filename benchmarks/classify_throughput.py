"""Images per second from JPEG files: ``classify`` and ``extract_features`` in float32 and int8
on LiteRT against Keras ``model.predict`` on ready tensors, in one run; where decoding time goes.

    python benchmarks/classify_throughput.py [--model NAME] [--n N] [--batch-size B] [--repeats R]

Uses the dev set (../shared/data/imagenet-sample-dev) when present, else the
photos in images/ repeated. Every path runs the same model in the same process,
alternating, and keeps its best of ``--repeats`` runs, so that a burst of other
work on the machine does not decide the ratios (the slowest run is printed too).
Run it with TensorFlow's default settings (TF_ENABLE_ONEDNN_OPTS unset), as users
do. With the dev set it also prints the accuracy of each precision from files and
how much int8 agrees with float32. int8 calibrates on the photos in images/ (never the
dev set it is measured on), as the command line does by default. Target on 2 cores: int8
``classify`` from files >= 2.5x Keras on ready tensors. On a terminal, ``classify`` shows
its progress bars on stderr; the figures go to stdout.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from helpers import classify, extract_features, list_images, load_image, load_model  # noqa: E402
from helpers.engine import predictor  # noqa: E402
from helpers.images import CROP_FRACTION, center_box  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "data" / "imagenet-sample-dev"
CALIBRATION = str(ROOT / "images")  # the photos int8 calibrates on, as the command line's default
PRECISIONS = ("float32", "int8")


def photo_paths(n: int) -> list[Path]:
    """``n`` photo paths: the dev set if present, else images/ repeated."""
    pool = list_images(DEV_SET) if DEV_SET.is_dir() else list_images(ROOT / "images")
    return [pool[i % len(pool)] for i in range(n)]


def cpu_ms(step, items) -> float:
    """CPU milliseconds per item of ``step``, best of 3 passes."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for item in items:
            step(item)
        best = min(best, time.process_time() - start)
    return 1000 * best / len(items)


def decode_breakdown(files: list[Path], net) -> dict[str, float]:
    """CPU ms per photo of each step of ``load_image(path, size)``, and of batching."""
    size = net.input_size[0]
    shorter = int(np.ceil(size / CROP_FRACTION))

    def decode(data):
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (shorter, shorter))
        image.load()
        return image

    def resize(image):  # as load_image does
        return image.resize((size, size), Image.BILINEAR, box=center_box(image.size, (size, size)), reducing_gap=3.0)

    raw = [f.read_bytes() for f in files]
    decoded = [decode(data) for data in raw]
    resized = [resize(im) for im in decoded]
    arrays = [np.asarray(im) for im in resized]
    batches = [arrays[i:i + 32] for i in range(0, len(arrays), 32)]
    return {
        "decode (JPEG, drafted)": cpu_ms(decode, raw),
        "resize the center box": cpu_ms(resize, decoded),
        "to a uint8 array": cpu_ms(np.asarray, resized),
        "load_image total, uint8": cpu_ms(lambda f: load_image(f, size=size, dtype="uint8"), files),
        "load_image total, float32": cpu_ms(lambda f: load_image(f, size=size), files),
        "stack + float32 + preprocess": cpu_ms(lambda b: net.preprocess(np.stack(b).astype(np.float32)), batches)
        * len(batches) / len(arrays),
    }


def measure(run, count: int, best: tuple[float, float, float]) -> tuple[float, float, float]:
    """(images per second, CPU ms per image, slowest images per second) of one call of
    ``run``, each kept from ``best`` if that was better (slower, for the last). CPU time
    counts every thread of the process: what a photo costs whatever else runs on the machine."""
    start, cpu = time.perf_counter(), time.process_time()
    run()
    rate, cost = count / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / count
    return max(best[0], rate), min(best[1], cost), min(best[2], rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()

    nets = {"classify": load_model(args.model), "extract_features": load_model(args.model, include_top=False)}
    size = nets["classify"].input_size[0]
    files = photo_paths(args.n)
    decoded = np.stack([load_image(f, size=size, dtype="uint8") for f in files])  # decoded, 0-255
    ready = nets["classify"].preprocess(decoded.astype(np.float32))  # Keras' input
    steps = decode_breakdown(files[:64], nets["classify"])

    def from_files(task, precision, backend="litert"):
        net, call = nets[task], classify if task == "classify" else extract_features
        return lambda: call(net, files, batch_size=args.batch_size, backend=backend, precision=precision,
                            calibration=CALIBRATION)

    def on_tensors(task, precision=None):
        net = nets[task]
        if precision is None:  # Keras, as a notebook calls it
            return lambda: net.model.predict(ready, batch_size=args.batch_size, verbose=0)
        run = predictor(net, "litert", precision, calibration=CALIBRATION)  # every core on one call
        return lambda: [run(decoded[i:i + args.batch_size]) for i in range(0, len(files), args.batch_size)]

    paths = {}
    for task in nets:
        paths[(task, "keras predict, ready tensors")] = on_tensors(task)
        paths[(task, "keras, from files (the default)")] = from_files(task, "float32", backend=None)
        for precision in PRECISIONS:
            paths[(task, f"litert {precision}, decoded photos")] = on_tensors(task, precision)
            paths[(task, f"litert {precision}, from files")] = from_files(task, precision)
    for net in nets.values():  # warm up: build Keras' graph once (LiteRT models are made above)
        net.model.predict(ready[:args.batch_size], verbose=0)
    best = dict.fromkeys(paths, (0.0, float("inf"), float("inf")))
    for _ in range(args.repeats):
        for key, run in paths.items():
            best[key] = measure(run, len(files), best[key])

    print(f"model {args.model}, {len(files)} photos from {files[0].parent}, batch {args.batch_size}, "
          f"{os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}, "
          f"best of {args.repeats}")
    print("CPU per photo (first 64):")
    for step, ms in steps.items():
        print(f"  {step:<30} {ms:6.2f} ms")
    for task in nets:
        keras_rate, keras_cost, _ = best[(task, "keras predict, ready tensors")]
        print(f"{task + ':':<34} img/s  x Keras  CPU ms/img  x Keras  slowest img/s")
        for (t, path), (rate, cost, slowest) in best.items():
            if t == task:
                print(f"  {path:<32} {rate:6.1f}  {rate / keras_rate:5.2f}x   {cost:8.1f}  {keras_cost / cost:5.2f}x"
                      f"  {slowest:8.1f}")
    if DEV_SET.is_dir():
        report_accuracy(nets, files[:len(list_images(DEV_SET))], args.batch_size)
    print("load average (1 min) before, after: {:.1f}, {:.1f}".format(load_before[0], os.getloadavg()[0]))


def report_accuracy(nets, files: list[Path], batch_size: int) -> None:
    """Dev-set top-1 and top-5 per precision from files, agreement, and feature cosines."""
    truth = [f.name.split("_")[0] for f in files]
    top1 = {}
    for precision in PRECISIONS:
        results = classify(nets["classify"], files, batch_size=batch_size, backend="litert", precision=precision,
                           calibration=CALIBRATION)
        top1[precision] = [r.predictions[0][0] for r in results]
        hits1 = np.mean([p == t for p, t in zip(top1[precision], truth)])
        hits5 = np.mean([t in [w for w, _, _ in r.predictions] for r, t in zip(results, truth)])
        print(f"dev set, {len(files)} photos, {precision:<7}: top-1 {hits1:.3f}, top-5 {hits5:.3f}")
    print(f"int8 top-1 agrees with float32: {np.mean([a == b for a, b in zip(*top1.values())]):.3f}")
    vectors = [extract_features(nets["extract_features"], files, batch_size=batch_size, backend="litert", precision=p,
                                calibration=CALIBRATION).vectors for p in PRECISIONS]
    a, b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors)
    cosine = np.sum(a * b, axis=1)
    print(f"int8 vs float32 features (avg-pooled), cosine: mean {cosine.mean():.4f}, min {cosine.min():.4f}")


if __name__ == "__main__":
    main()
