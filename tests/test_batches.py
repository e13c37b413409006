import numpy as np
import pytest

from helpers import batches, load_image
from helpers.batches import stream_batches


def gray_photos(n: int) -> list[np.ndarray]:
    """``n`` photos of different flat colours, as arrays."""
    return [np.full((40, 50, 3), (7 * i, 255 - 9 * i, 11 * i % 256), np.uint8) for i in range(n)]


@pytest.mark.parametrize("backend", ["litert", "keras"])
def test_batches_come_in_order_with_one_error_per_source(tiny_net, tmp_path, backend):
    net = tiny_net()
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    photos = gray_photos(10)
    sources = photos[:3] + [broken] + photos[3:]
    got = list(stream_batches(net, sources, batch_size=3, workers=3, backend=backend))
    errors = [e for batch_errors, _ in got for e in batch_errors]
    assert [len(batch_errors) for batch_errors, _ in got] == [3, 3, 3, 2]
    assert [i for i, e in enumerate(errors) if e] == [3] and "broken.jpg" in errors[3]
    outputs = np.concatenate([o for _, o in got if o is not None])
    expected = net.model.predict(net.preprocess(np.stack([load_image(p, size=32) for p in photos])), verbose=0)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_a_few_sources_are_shared_among_the_workers(tiny_net):
    got = list(stream_batches(tiny_net(), gray_photos(10), batch_size=32, workers=2))
    assert [len(errors) for errors, _ in got] == [5, 5]
    assert list(stream_batches(tiny_net(), [], workers=2)) == []


def test_stopping_early_starts_no_more_batches(tiny_net, monkeypatch):
    import threading

    photos, started, release = gray_photos(100), [], threading.Event()
    decode = batches._decode

    def slow_decode(net, chunk):
        started.append(len(chunk))
        if chunk[0] is not photos[0]:  # the first batch comes back; the others wait until the caller stopped
            release.wait(timeout=30)
        return decode(net, chunk)

    monkeypatch.setattr(batches, "_decode", slow_decode)
    stream = stream_batches(tiny_net(), photos, batch_size=2, workers=2)
    next(stream)
    threading.Timer(0.5, release.set).start()  # lets the batches under way finish
    stream.close()
    # 5 batches were submitted (twice the workers, then one more); the 2 or 3 that had not
    # started when the caller stopped never start.
    assert len(started) <= 3


def test_bad_arguments_are_refused(tiny_net):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(stream_batches(tiny_net(), gray_photos(2), batch_size=0))
    for workers in (0, -1):
        with pytest.raises(ValueError, match="workers must be at least 1"):
            next(stream_batches(tiny_net(), gray_photos(2), workers=workers))


def test_workers_run_inside_a_callers_quiet_stderr_block(tiny_net):
    # Worker threads make their own interpreters; quiet_stderr is held by the caller's thread.
    import threading

    from helpers.quiet import quiet_stderr

    result = []

    def run():
        with quiet_stderr():
            result.extend(stream_batches(tiny_net(), gray_photos(8), batch_size=2, workers=2, backend="litert"))

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(timeout=120)
    assert not caller.is_alive(), "stream_batches deadlocked inside quiet_stderr"
    assert [len(errors) for errors, _ in result] == [2, 2, 2, 2]
