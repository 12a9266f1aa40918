"""Saving and loading weights: resnet_np's ``.npz`` checkpoints and PyTorch ``.pth`` files.

* ``save`` -> ``load`` rebuilds the network from the file alone (architecture,
  constructor arguments, dtype) with bit-identical arrays and logits;
* the file is a plain ``.npz`` that reads with ``allow_pickle=False``;
* writes are atomic: a save that fails half-way leaves the previous file
  intact and no temporary file behind, and the bytes are fsynced before the
  rename;
* every bad file gets a clear error naming it;
* torchvision-format state dicts go both ways through ``torch.save`` /
  ``torch.load(weights_only=True)``.

Every array of a model is first filled with distinctive random values
(``scramble``): a fresh model's batch-norm defaults (1, 0, 0, 1) and a
replayed random seed would otherwise let a loader that loads nothing pass.
"""

import json
import os
import pickle
import sys

import numpy as np
import pytest

from resnet_np.layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)
from resnet_np.models import (
    CifarResNet,
    load,
    load_torch_state_dict,
    plain20,
    resnet18,
    resnet20,
    resnet32,
    save,
    save_torch_state_dict,
    weights,
)


def scramble(model, seed=1):
    """Fill every parameter and buffer with random values (in place); returns the model."""
    rng = np.random.default_rng(seed)
    for key, a in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            a[...] = rng.integers(1, 1000)
        elif key.endswith("running_var"):
            a[...] = rng.uniform(0.5, 2.0, a.shape)
        else:
            a[...] = rng.standard_normal(a.shape)
    return model


def images(model, n=2, size=8, seed=2):
    x = np.random.default_rng(seed).standard_normal((n, model.config["in_channels"], size, size))
    return x.astype(model.conv1.weight.data.dtype)


def assert_same_state(a, b):
    """Same keys in the same order, and every array bit-identical with the same dtype."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def read_meta(path):
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["__meta__"][()]))


def rewrite_meta(path, **changes):
    """Rewrite the checkpoint at ``path`` with some metadata fields changed."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    meta.update(changes)
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture
def saved(tmp_path):
    """A scrambled resnet20 and the checkpoint it was saved to."""
    model = scramble(resnet20())
    path = tmp_path / "resnet20.npz"
    save(model, path)
    return model, path


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [
    resnet20,
    lambda: resnet20(in_channels=1, num_classes=5, shortcut="B"),
    plain20,
], ids=["resnet20", "resnet20-1ch-5cls-B", "plain20"])
def test_round_trip_rebuilds_the_network_from_the_file_alone(tmp_path, factory):
    model = scramble(factory())
    path = tmp_path / "model.npz"
    save(model, path)

    loaded = load(path)

    assert type(loaded) is type(model)
    assert loaded.arch == model.arch
    assert loaded.config == model.config
    assert_same_state(loaded, model)
    x = images(model)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))


def test_round_trip_keeps_float64(tmp_path):
    model = scramble(resnet20().astype("float64"))
    path = tmp_path / "f64.npz"
    save(model, path)
    assert read_meta(path)["dtype"] == "float64"

    loaded = load(path)

    assert loaded.conv1.weight.data.dtype == np.float64
    assert loaded.bn1.num_batches_tracked.dtype == np.int64
    assert_same_state(loaded, model)  # float64 values that a float32 detour would round
    x = images(model)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))


def test_batch_norm_running_stats_survive_training(tmp_path):
    model = resnet20(shortcut="B")
    rng = np.random.default_rng(3)
    loss = SoftmaxCrossEntropy()
    for _ in range(2):  # two SGD steps in train mode
        model.zero_grad()
        loss(model(images(model, n=4, seed=int(rng.integers(100)))), rng.integers(0, 10, 4))
        model.backward(loss.backward())
        for p in model.parameters():
            p.data -= 0.1 * p.grad
    assert int(model.bn1.num_batches_tracked) == 2
    assert not np.allclose(model.layer2[0].downsample[1].running_mean, 0)
    path = tmp_path / "trained.npz"
    save(model, path)

    loaded = load(path)

    assert int(loaded.bn1.num_batches_tracked) == 2
    assert_same_state(loaded, model)
    x = images(model)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))


def test_file_is_a_plain_npz_without_pickles(saved):
    model, path = saved
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(list(model.state_dict()) + ["__meta__"])
        for key, a in model.state_dict().items():
            np.testing.assert_array_equal(data[key], a)
    assert read_meta(path) == {"format_version": 1, "arch": "resnet20", "dtype": "float32",
                               "config": {"num_classes": 10, "in_channels": 3, "shortcut": "A",
                                          "residual": True}}


def test_save_writes_exactly_the_given_path_and_overwrites(tmp_path):
    path = tmp_path / "weights.ckpt"  # numpy would append ".npz" to a file name
    save(resnet20(), path)
    model = scramble(resnet20(), seed=5)
    save(model, str(path))
    assert os.listdir(tmp_path) == ["weights.ckpt"]
    assert_same_state(load(path), model)


def test_load_into_a_given_model(saved):
    model, path = saved
    target = resnet20()
    assert load(path, model=target, backend="numpy") is target
    assert_same_state(target, model)


def test_model_without_arch_loads_into_a_given_model(tmp_path):
    def small():
        return Sequential(Conv2d(3, 4, 3, padding=1), BatchNorm2d(4), ReLU(), GlobalAvgPool2d(), Flatten(),
                          Linear(4, 2))
    model = scramble(small())
    path = tmp_path / "small.npz"
    save(model, path)
    assert read_meta(path)["arch"] is None

    with pytest.raises(ValueError, match="without an architecture name.*model="):
        load(path)
    loaded = load(path, model=small())
    assert_same_state(loaded, model)


# -- atomic writes ---------------------------------------------------------------------------


def half_written_savez(fileobj, **arrays):
    """Stands in for np.savez on a full disk: some bytes, then an error."""
    fileobj.write(b"PK\x03\x04 half of an archive")
    raise OSError(28, "No space left on device")


def interrupted_savez(fileobj, **arrays):
    fileobj.write(b"PK\x03\x04 half of an archive")
    raise KeyboardInterrupt


@pytest.mark.parametrize("failing_savez, error", [(half_written_savez, OSError),
                                                  (interrupted_savez, KeyboardInterrupt)])
def test_failed_save_leaves_the_previous_file_intact(saved, monkeypatch, failing_savez, error):
    model, path = saved
    good_bytes = path.read_bytes()
    monkeypatch.setattr(weights.host, "savez", failing_savez)

    with pytest.raises(error):
        save(scramble(resnet20(), seed=9), path)

    monkeypatch.undo()
    assert path.read_bytes() == good_bytes
    assert_same_state(load(path), model)
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_failed_first_save_creates_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(weights.host, "savez", half_written_savez)
    with pytest.raises(OSError, match="No space left"):
        save(resnet20(), tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


def test_bytes_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    """The rename must point at bytes already on disk, and come from the same folder."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, os.path.dirname(os.path.abspath(src)), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "model.npz"
    save(resnet20(), path)

    replaces = [e for e in events if e[0] == "replace"]
    assert len(replaces) == 1
    _, inode, folder, dst = replaces[0]
    assert folder == str(tmp_path) and dst == str(path)
    assert ("fsync", inode) in events[:events.index(replaces[0])]
    assert os.stat(path).st_ino == inode


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_saved_file_gets_ordinary_permissions(tmp_path):
    """Not tempfile's owner-only 0o600: the mode open() would give a new file."""
    umask = os.umask(0o022)
    try:
        save(resnet20(), tmp_path / "model.npz")
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "model.npz").st_mode & 0o777 == 0o644


# -- clear errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped byte", "npy"])
def test_damaged_file(saved, damage):
    _, path = saved
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x13 this is not an archive" * 10)
    elif damage == "flipped byte":  # inside the last array's data: only the CRC can tell
        i = data.rfind(b"PK\x01\x02") - 100
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    else:  # a single .npy array under the checkpoint's name
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match=r"resnet20.npz is not a resnet_np checkpoint \(truncated or corrupted"):
        load(path)


def test_npz_without_metadata(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, **{"conv1.weight": np.zeros((16, 3, 3, 3), dtype=np.float32)})
    with pytest.raises(ValueError, match="plain.npz has no '__meta__' entry"):
        load(path)


def test_future_format_version(saved):
    _, path = saved
    rewrite_meta(path, format_version=2)
    with pytest.raises(ValueError, match="format version 2.*up to 1.*upgrade"):
        load(path)


def test_unknown_architecture(saved):
    _, path = saved
    rewrite_meta(path, arch="resnet9000")
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'.*resnet20"):
        load(path)


def test_architecture_mismatch_names_both(saved):
    _, path = saved
    with pytest.raises(ValueError, match="resnet20.npz holds a resnet20.*is a resnet32"):
        load(path, model=resnet32())


def test_strict_loading_lists_the_keys(saved):
    """A 32-layer network without an arch name gets past the name check, not past strict loading."""
    _, path = saved
    target = CifarResNet(5)
    before = {k: v.copy() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="(?s)resnet20.npz: .*missing keys: layer1.3.conv1.weight") as info:
        load(path, model=target)
    assert "layer3.4.bn2.num_batches_tracked" in str(info.value)
    for key, a in target.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(a, before[key])


def test_other_config_of_the_same_architecture(saved):
    _, path = saved
    with pytest.raises(ValueError, match="missing keys: layer2.0.downsample.0.weight"):
        load(path, model=resnet20(shortcut="B"))
    with pytest.raises(ValueError, match=r"fc.weight: expected shape \(5, 64\), got \(10, 64\)"):
        load(path, model=resnet20(num_classes=5))


# -- PyTorch state dicts ---------------------------------------------------------------------


def torch_resnet20_b(torch):
    """resnet20(shortcut="B") in torch.nn, with torchvision's attribute names (hence its keys)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = nn.Sequential(Block(16, 16, 1), Block(16, 16, 1), Block(16, 16, 1))
            self.layer2 = nn.Sequential(Block(16, 32, 2), Block(32, 32, 1), Block(32, 32, 1))
            self.layer3 = nn.Sequential(Block(32, 64, 2), Block(64, 64, 1), Block(64, 64, 1))
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # random batch-norm statistics and affine parameters
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(17)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.dim() == 1:  # batch-norm weight, bias, running_mean; fc.bias
                t.normal_()
    return net.eval()


def needs_torch():
    return pytest.importorskip("torch", reason="torch not installed: the .pth tests need the 'torch' extra")


def test_load_a_checkpoint_written_by_torch(tmp_path):
    torch = needs_torch()
    net = torch_resnet20_b(torch)
    path = tmp_path / "resnet20.pth"
    torch.save(net.state_dict(), path)

    model = load_torch_state_dict(resnet20(shortcut="B"), path)

    assert list(model.state_dict()) == list(net.state_dict())
    for key, t in net.state_dict().items():
        assert model.state_dict()[key].dtype == t.numpy().dtype, key
        np.testing.assert_array_equal(model.state_dict()[key], t.numpy(), err_msg=key)
    x = images(model)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.eval()(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("wrap", ["plain dict", "state_dict", "model", "DataParallel"])
def test_load_an_in_memory_or_wrapped_state_dict(wrap):
    torch = needs_torch()
    source = scramble(resnet20(in_channels=1, num_classes=5, shortcut="B"))
    state = {key: torch.from_numpy(a.copy()) for key, a in source.state_dict().items()}
    if wrap == "state_dict":
        state = {"epoch": 3, "state_dict": state}
    elif wrap == "model":
        state = {"model": state, "optimizer": {}}
    elif wrap == "DataParallel":
        state = {"module." + key: t for key, t in state.items()}

    model = load_torch_state_dict(resnet20(in_channels=1, num_classes=5, shortcut="B"), state)

    assert_same_state(model, source)


def test_save_a_checkpoint_torch_reads(tmp_path):
    torch = needs_torch()
    model = scramble(resnet20(shortcut="B"))
    path = tmp_path / "ours.pth"
    save_torch_state_dict(model, path)
    assert os.listdir(tmp_path) == ["ours.pth"]

    state = torch.load(path, weights_only=True)

    assert list(state) == list(model.state_dict())
    for key, a in model.state_dict().items():
        t = state[key]
        expected_dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        assert t.dtype == expected_dtype, key
        assert tuple(t.shape) == a.shape, key
        np.testing.assert_array_equal(t.numpy(), a, err_msg=key)
    net = torch_resnet20_b(torch)
    net.load_state_dict(state, strict=True)  # torch itself accepts every key and shape
    x = images(model)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_torch_save_failure_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    torch = needs_torch()
    path = tmp_path / "ours.pth"
    save_torch_state_dict(resnet20(), path)
    good_bytes = path.read_bytes()

    def failing_save(obj, f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_torch_state_dict(resnet20(), path)
    assert path.read_bytes() == good_bytes
    assert os.listdir(tmp_path) == ["ours.pth"]


def test_old_torch_file_without_num_batches_tracked_loads_strictly():
    """The first torchvision weights (before PyTorch 0.4.1) have no num_batches_tracked; torch loads them."""
    torch = needs_torch()
    source = scramble(resnet20(shortcut="B"))
    state = {key: torch.from_numpy(a.copy()) for key, a in source.state_dict().items()
             if not key.endswith("num_batches_tracked")}

    model = load_torch_state_dict(resnet20(shortcut="B"), state)

    for key in state:
        np.testing.assert_array_equal(model.state_dict()[key], source.state_dict()[key], err_msg=key)
    assert int(model.bn1.num_batches_tracked) == 0  # its own counter, as torch keeps its own
    del state["bn1.running_mean"]  # a batch norm without its statistics is still an error
    with pytest.raises(ValueError, match="missing keys: bn1.running_mean, bn1.num_batches_tracked"):
        load_torch_state_dict(resnet20(shortcut="B"), state)


def test_bad_torch_state_dict_lists_every_problem_at_once():
    torch = needs_torch()
    model = resnet20(shortcut="B")
    state = {key: torch.from_numpy(a.copy()) for key, a in model.state_dict().items()}
    del state["layer2.0.downsample.0.weight"]
    state["layer4.0.conv1.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(5, 64)

    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, state)

    message = str(info.value)
    assert "missing keys: layer2.0.downsample.0.weight" in message
    assert "unexpected keys: layer4.0.conv1.weight" in message
    assert "fc.weight: expected shape (10, 64), got (5, 64)" in message


def test_non_strict_torch_load_skips_missing_and_unexpected_keys():
    torch = needs_torch()
    source = scramble(resnet20())
    state = {key: torch.from_numpy(a.copy()) for key, a in source.state_dict().items() if not key.startswith("fc.")}
    state["head.weight"] = torch.zeros(2)
    model = resnet20()
    fc_before = model.fc.weight.data.copy()

    load_torch_state_dict(model, state, strict=False)

    np.testing.assert_array_equal(model.conv1.weight.data, source.conv1.weight.data)
    np.testing.assert_array_equal(model.fc.weight.data, fc_before)


def test_torch_functions_say_how_to_install_torch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" fail
    with pytest.raises(RuntimeError, match=r"load_torch_state_dict needs PyTorch: pip install -e '\.\[torch\]'"):
        load_torch_state_dict(resnet20(), {})
    with pytest.raises(RuntimeError, match="save_torch_state_dict needs PyTorch"):
        save_torch_state_dict(resnet20(), tmp_path / "x.pth")


def test_a_damaged_array_header_is_an_error_not_wrong_weights(tmp_path):
    """NumPy reads a large entry only as far as its header says, so the zip CRC is never
    checked: a header claiming float16 instead of float32 would load half the bytes as
    weights of the right shape. Every entry must be read to its end first."""
    path = str(tmp_path / "m.npz")
    save(resnet18(), path)
    raw = bytearray(open(path, "rb").read())
    at = raw.index(b"'shape': (512, 512, 3, 3)")        # a 9 MB entry: read in pieces
    descr = raw.rindex(b"'descr': '<f4'", 0, at)
    raw[descr:descr + 14] = b"'descr': '<f2'"
    open(path, "wb").write(bytes(raw))
    with pytest.raises(ValueError, match="m.npz is not a resnet_np checkpoint"):
        load(path)


# -- files that are not what they should be: one error naming the file and what it holds ---------------------------


class NotAStateDict:
    """A class a pickle can name: torch refuses to rebuild it under weights_only=True."""


def torch_files(torch, folder):
    """(name, path, fragment of the error) of every kind of .pth that is not a plain state dict."""
    cases = []

    def saved(name, obj, fragment, **kwargs):
        path = str(folder / f"{name}.pth")
        torch.save(obj, path, **kwargs)
        cases.append((name, path, fragment))

    saved("whole-module", torch.nn.Linear(2, 2), "holds a pickled Python object (torch.nn.modules.linear.Linear)")
    saved("custom-class", {"w": NotAStateDict()}, "holds a pickled Python object (test_weights.NotAStateDict)")
    saved("a-tensor", torch.zeros(2), "holds a torch.Tensor, not a state dict")
    saved("a-list", [torch.zeros(2)], "holds a list, not a state dict")
    saved("no-tensors", {"epoch": 3, "optimizer": {"state": {}}}, "its entries epoch (int), optimizer (dict) are not")
    saved("int-keys", {1: torch.zeros(2)}, "keys are names like 'conv1.weight', but it has [1]")
    saved("empty-dict", {}, "holds an empty dict")
    saved("sparse", {"w": torch.zeros(2, 2).to_sparse()}, "w is a tensor NumPy cannot hold (torch.sparse_coo")
    for name, data, fragment in (("text", b"hello", "is not a PyTorch file that can be read"),
                                 ("empty", b"", "is empty or truncated"),
                                 ("pickle", pickle.dumps({"w": 1}, protocol=4), "a Python pickle that asks for more"),
                                 ("truncated", open(cases[2][1], "rb").read()[:300], "truncated or corrupted")):
        path = folder / f"{name}.pth"
        path.write_bytes(data)
        cases.append((name, str(path), fragment))
    return cases


def test_every_pth_that_is_not_a_plain_state_dict_gets_one_error_naming_the_file_and_what_it_holds(tmp_path):
    torch = needs_torch()
    for name, path, fragment in torch_files(torch, tmp_path):
        with pytest.raises(ValueError) as error:
            load_torch_state_dict(resnet20(), path)
        message = str(error.value)
        assert message.startswith(path) and fragment in message, (name, message)
        assert "weights_only" not in message, name  # never torch's advice to turn the protection off
        assert error.value.__cause__ is None and (error.value.__context__ is None or error.value.__suppress_context__)
    with pytest.raises(FileNotFoundError, match="no PyTorch weights file at"):
        load_torch_state_dict(resnet20(), tmp_path / "missing.pth")


def test_a_pth_that_records_another_architecture_is_refused_naming_both(tmp_path):
    torch = needs_torch()
    state = {key: torch.from_numpy(a.copy()) for key, a in resnet20().state_dict().items()}
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": state}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match=r"ckpt.pth records the architecture 'resnet18', but the model to load it "
                                         r"into is a resnet20"):
        load_torch_state_dict(resnet20(), tmp_path / "ckpt.pth")
    torch.save({"epoch": 90, "arch": "resnet20", "state_dict": state}, tmp_path / "ckpt.pth")
    load_torch_state_dict(resnet20(), tmp_path / "ckpt.pth")  # the one it records: fine


def test_a_network_that_fits_key_by_key_but_is_another_is_refused(tmp_path):
    save(scramble(resnet20(residual=False)), tmp_path / "plain.npz")
    with pytest.raises(ValueError, match=r"plain.npz holds a resnet20 with residual=False, but the model to load it "
                                         r"into has residual=True: the weights fit key by key"):
        load(tmp_path / "plain.npz", model=resnet20())
    assert load(tmp_path / "plain.npz").config["residual"] is False  # rebuilt from the file: the right network
