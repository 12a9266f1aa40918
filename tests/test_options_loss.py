"""CrossEntropyLoss with PyTorch's options, SoftmaxCrossEntropy's label smoothing, and ``train --label-smoothing``.

Parity with ``torch.nn.functional.cross_entropy`` in float64 over a grid of
weights, ignored samples, reductions, label smoothing and soft targets
(values and input gradients, with a random upstream gradient); gradient
checks against finite differences; PyTorch's error messages; the command
line's option, its validation, and the resume of a checkpoint written before
the option existed (the long runs in progress are resumed by this code).
"""

import json

import numpy as np
import pytest
from test_cli import tiny_folder

from resnet_np import backend, cupy_strict
from resnet_np import layers as L
from resnet_np import train as train_module
from resnet_np.__main__ import main
from resnet_np.checkpoint import check_training, load_checkpoint
from resnet_np.gradcheck import check_module, rel_error
from resnet_np.models import weights

N, K = 7, 4
TOL = 1e-12
REDUCTIONS = ("mean", "sum", "none")


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def logits(seed=0):
    return 2.0 * randn(N, K, seed=seed)


LABELS = np.array([0, 3, 1, 2, 1, 3, 0])        # 1 appears twice: ignore_index=1 drops two samples
WEIGHT = np.array([0.5, 2.0, 1.5, 0.25])
PROBS = np.random.default_rng(3).dirichlet(np.ones(K), size=N)


def torch_loss(z, target, dout, **options):
    """PyTorch's loss and its input gradient for the upstream gradient ``dout``, in float64."""
    torch = pytest.importorskip("torch")
    zt = torch.tensor(z, requires_grad=True)
    if options.get("weight") is not None:
        options["weight"] = torch.tensor(options["weight"])
    loss = torch.nn.functional.cross_entropy(zt, torch.tensor(target), **options)
    loss.backward(torch.tensor(dout))
    return loss.detach().numpy(), zt.grad.numpy()


def ours(z, target, dout, **options):
    loss_fn = L.CrossEntropyLoss(**options)
    loss = loss_fn(z, target)
    return loss, loss_fn.backward(dout)


def upstream(reduction, shape, seed):
    """A random upstream gradient: one value per sample for "none" (dout = 1 hides a wrong per-row scale)."""
    return randn(*shape, seed=seed) if reduction == "none" else np.asarray(randn(1, seed=seed)[0])


def assert_same(got, want, what):
    (loss, dz), (want_loss, want_dz) = got, want
    assert np.shape(loss) == np.shape(want_loss), what
    assert rel_error(np.asarray(loss), want_loss) < TOL, (what, loss, want_loss)
    assert rel_error(dz, want_dz) < TOL, (what, dz, want_dz)


# -- parity with PyTorch -------------------------------------------------------------------------------------

@pytest.mark.parametrize("label_smoothing", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_indices_and_probabilities_match_pytorch(reduction, label_smoothing):
    pytest.importorskip("torch")
    z, seed = logits(), 0
    for weight in (None, WEIGHT):
        cases = [(LABELS, -100), (LABELS, 1), (PROBS, -100), (PROBS, -3)]  # probabilities: ignore_index < 0 only
        for target, ignore_index in cases:
            seed += 1
            options = dict(weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
            dout = upstream(reduction, (N,), seed)
            what = f"{options}, {'probabilities' if target is PROBS else 'class indices'}"
            assert_same(ours(z, target, dout, **options), torch_loss(z, target, dout, **options), what)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_unbatched_sample_matches_pytorch(reduction):
    """(K,) logits with a 0-d class index, an ignored one, or (K,) probabilities; weighted and smoothed."""
    pytest.importorskip("torch")
    z = logits()[2]
    for k, (target, options) in enumerate([(np.array(3), {}), (np.array(1), dict(weight=WEIGHT)),
                                           (np.array(2), dict(weight=WEIGHT, label_smoothing=0.3)),
                                           (PROBS[0], dict(weight=WEIGHT, label_smoothing=0.3)),
                                           (np.array(-100), dict(label_smoothing=0.1))]):
        dout = upstream(reduction, (), k)
        got = ours(z, target, dout, reduction=reduction, **options)
        want = torch_loss(z, target, dout, reduction=reduction, **options)
        assert got[1].shape == (K,), options
        if np.isnan(want[0]):  # an ignored sample's mean is 0 / 0
            assert np.isnan(got[0]) and np.shape(got[0]) == () and not got[1].any(), (got, want)
        else:
            assert_same(got, want, (target, options))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_sample_ignored_or_none_at_all_as_pytorch(reduction):
    """The mean of nothing is NaN (0 / 0), the sum 0; the gradient is 0, not NaN."""
    pytest.importorskip("torch")
    z = logits()
    cases = [(z, np.full(N, 2), dict(ignore_index=2, weight=WEIGHT, label_smoothing=0.2)),
             (z, np.full(N, -100), {}),
             (z[:0], LABELS[:0], dict(label_smoothing=0.2)), (z[:0], PROBS[:0], {})]
    for x, target, options in cases:
        dout = upstream(reduction, (len(x),), 0)
        (loss, dz), (want_loss, want_dz) = ours(x, target, dout, reduction=reduction, **options), torch_loss(
            x, target, dout, reduction=reduction, **options)
        np.testing.assert_array_equal(loss, want_loss)  # NaN equals NaN here
        np.testing.assert_array_equal(dz, want_dz)
        assert dz.shape == x.shape and not dz.any()


def test_the_weighted_mean_divides_by_the_weights_of_the_samples_kept():
    """Worked by hand: mean = sum_n w[y_n] l_n / sum_n w[y_n] over the samples not ignored (not / N)."""
    z = logits()
    per_sample = -(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(N), LABELS]
    kept = LABELS != 1
    want = (WEIGHT[LABELS] * per_sample)[kept].sum() / WEIGHT[LABELS][kept].sum()
    got = L.CrossEntropyLoss(weight=WEIGHT, ignore_index=1)(z, LABELS)
    assert rel_error(got, want) < TOL


def test_label_smoothing_gradient_is_softmax_minus_the_smoothed_target():
    """Without weights: dz = (softmax(z) - ((1 - eps) onehot(y) + eps / K)) / N for the mean."""
    z, eps = logits(), 0.3
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    target = (1 - eps) * np.eye(K)[LABELS] + eps / K
    for loss_fn in (L.CrossEntropyLoss(label_smoothing=eps), L.SoftmaxCrossEntropy(label_smoothing=eps)):
        loss = loss_fn(z, LABELS)
        assert rel_error(np.asarray(loss), -(target * np.log(p)).sum(axis=1).mean()) < TOL, loss_fn
        assert rel_error(loss_fn.backward(), (p - target) / N) < TOL, loss_fn


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_softmax_cross_entropy_is_the_mean_case_of_cross_entropy_loss(label_smoothing):
    z, dloss = logits(seed=5), 0.7
    simple, general = L.SoftmaxCrossEntropy(label_smoothing), L.CrossEntropyLoss(label_smoothing=label_smoothing)
    assert isinstance(simple(z, LABELS), float)
    assert rel_error(simple(z, LABELS), general(z, LABELS)) < TOL
    assert rel_error(simple.backward(dloss), general.backward(dloss)) < TOL


# -- gradient checks against finite differences ----------------------------------------------------------------

class _WithTarget:
    """The loss as a function of the logits alone (the gradient check would also perturb soft targets)."""

    def __init__(self, loss_fn, target):
        self.loss_fn, self.target = loss_fn, target

    def forward(self, z):
        return self.loss_fn(z, self.target)

    def backward(self, dout):
        return self.loss_fn.backward(dout)


@pytest.mark.parametrize("target, options", [
    (LABELS, dict(weight=WEIGHT, ignore_index=1, label_smoothing=0.2)),
    (LABELS, dict(weight=WEIGHT, reduction="none", label_smoothing=0.2)),
    (LABELS, dict(ignore_index=3, reduction="sum", label_smoothing=1.0)),
    (PROBS, dict(weight=WEIGHT, label_smoothing=0.2)),
    (PROBS, dict(reduction="none")),
    (np.array(2), dict(weight=WEIGHT, reduction="none", label_smoothing=0.2)),
], ids=["weighted-ignored-smoothed", "none", "sum-eps1", "probabilities", "probabilities-none", "unbatched"])
def test_gradients_against_finite_differences(target, options):
    z = logits(seed=7)[0] if target.ndim == 0 else logits(seed=7)
    check_module(_WithTarget(L.CrossEntropyLoss(**options), target), z, tol=1e-7)


# -- bad input: PyTorch's messages, naming the loss --------------------------------------------------------------

@pytest.mark.parametrize("make, call, words", [
    (lambda: L.CrossEntropyLoss(weight=WEIGHT[:3]), lambda f: f(logits(), LABELS),
     ["CrossEntropyLoss(weight=(3,))", "weight tensor should be defined either for all 4 classes or no classes but "
      "got weight tensor of shape: [3]"]),
    (lambda: L.CrossEntropyLoss(weight=WEIGHT[:3]), lambda f: f(logits(), PROBS), ["all 4 classes", "[3]"]),
    (lambda: L.CrossEntropyLoss(ignore_index=0), lambda f: f(logits(), PROBS),
     ["ignore_index is not supported for floating point target"]),
    (lambda: L.CrossEntropyLoss(), lambda f: f(logits(), np.eye(K, dtype=np.int64)[LABELS]),
     ["Expected floating point type for target with class probabilities, got int64"]),
    (lambda: L.CrossEntropyLoss(), lambda f: f(logits(), np.array([0, 1, 4, 0, 0, 0, 0])),
     ["Target 4 is out of bounds"]),
    (lambda: L.CrossEntropyLoss(), lambda f: f(logits(), np.array([0, 1, -1, 0, 0, 0, 0])),
     ["Target -1 is out of bounds"]),
    (lambda: L.CrossEntropyLoss(), lambda f: f(logits(), LABELS[:5]),
     ["Expected input batch_size (7) to match target batch_size (5)."]),
    (lambda: L.CrossEntropyLoss(), lambda f: f(logits(), LABELS.astype(float)), ["integer type", "float64"]),
    (lambda: L.CrossEntropyLoss(), lambda f: f(randn(2, 3, 4), LABELS[:2]), ["(N, C) or (C,)", "3-D"]),
    (lambda: L.CrossEntropyLoss(reduction="none"), lambda f: (f(logits(), LABELS), f.backward(1.0)),
     ["upstream gradient of shape (7,)"]),
    (lambda: L.CrossEntropyLoss(reduction="avg"), None, ["avg is not a valid value for reduction"]),
    (lambda: L.CrossEntropyLoss(label_smoothing=1.5), None, ["label_smoothing must be between 0.0 and 1.0. Got: 1.5"]),
    (lambda: L.CrossEntropyLoss(label_smoothing=-0.1), None, ["between 0.0 and 1.0. Got: -0.1"]),
    (lambda: L.SoftmaxCrossEntropy(label_smoothing=1.01), None, ["between 0.0 and 1.0. Got: 1.01"]),
])
def test_bad_input_gives_pytorchs_message(make, call, words):
    with pytest.raises(ValueError) as error:
        loss_fn = make()
        call(loss_fn)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_pytorch_refuses_what_we_refuse():
    """The messages above are PyTorch's own (ours name the loss first)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = torch.tensor(logits())
    for call, words in [(lambda: F.cross_entropy(z, torch.tensor(LABELS), weight=torch.ones(3)), "shape: [3]"),
                        (lambda: F.cross_entropy(z, torch.tensor(PROBS), ignore_index=0), "floating point target"),
                        (lambda: F.cross_entropy(z, torch.tensor(LABELS), label_smoothing=1.5), "Got: 1.5")]:
        with pytest.raises(RuntimeError, match=".*" + words.replace("[", r"\[").replace("]", r"\]")):
            call()


# -- on the CuPy stand-in: the training loop's one read per step -------------------------------------------------

def test_cross_entropy_loss_runs_on_the_device_as_on_the_host(strict_cupy):
    """Device logits and targets, host weights (moved on the first call): the host's numbers, left on the device."""
    for target, options in [(LABELS, dict(weight=WEIGHT, ignore_index=1, label_smoothing=0.2)),
                            (PROBS, dict(weight=WEIGHT, reduction="none", label_smoothing=0.2))]:
        dout = upstream(options.get("reduction", "mean"), (N,), 1)
        want = ours(logits(), target, dout, **options)
        got = ours(*(backend.to_device(a, "cupy") for a in (logits(), target, dout)), **options)
        assert all(backend.is_cupy_array(a) for a in got), options
        for a, b in zip(got, want):
            assert rel_error(backend.to_numpy(a), b) < TOL, options


def test_label_smoothing_keeps_one_synchronisation_per_training_step():
    from resnet_np import models as M
    from resnet_np.data import DataLoader, Dataset
    from resnet_np.optim import SGD

    def syncs(steps):
        backend.use("cupy-strict")
        backend.manual_seed(0)
        rng = np.random.default_rng(0)
        data = Dataset(rng.integers(0, 256, (4 * steps, 3, 8, 8), dtype=np.uint8), rng.integers(0, 4, 4 * steps),
                       ["a", "b", "c", "d"], (0.5,) * 3, (0.25,) * 3, name="tiny")
        model = M.CifarResNet(1, num_classes=4)
        with cupy_strict.counting() as traffic:
            train_module.fit(model, DataLoader(data, batch_size=4), None, 1, SGD(model.parameters(), lr=0.05),
                             loss_fn=L.SoftmaxCrossEntropy(label_smoothing=0.1), progress=False, log=lambda *a: None)
        return traffic.synchronizations

    assert (syncs(4) - syncs(2)) / 2 <= 1


# -- the command line: train --label-smoothing ------------------------------------------------------------------

def one_line_error(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, (argv, code, err)
    return err


@pytest.mark.parametrize("command", [["train"], ["finetune", "--weights", "cifar10"]])
@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "inf", "a lot"])
def test_label_smoothing_is_checked_where_parsed(command, value, capsys):
    err = one_line_error(capsys, [*command, "--label-smoothing", value])
    assert "argument --label-smoothing: expected a number in [0, 1], e.g. 0.1" in err, err


def test_train_with_label_smoothing_and_resume_a_checkpoint_from_before_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "save_curves", lambda *args, **kwargs: None)  # the figure: most of the time
    folder = tiny_folder(tmp_path / "photos")
    run = ["train", "--dataset", f"folder:{folder}", "--model", "resnet20", "--image-size", "8", "--batch-size",
           "4", "--epochs", "2", "--warmup-steps", "0", "--no-progress"]
    straight, old, smoothed = tmp_path / "straight", tmp_path / "old", tmp_path / "smoothed"
    assert main([*run, "--out", str(straight)]) == 0
    assert main([*run, "--label-smoothing", "0.1", "--epochs", "1", "--out", str(smoothed)]) == 0
    assert "loss: cross-entropy with label smoothing 0.1" in capsys.readouterr().out
    a, s = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(smoothed / "checkpoint.npz")
    assert a.config["label_smoothing"] == 0.0 and s.config["label_smoothing"] == 0.1
    assert s.history["train_loss"][0] != a.history["train_loss"][0]  # the option reaches the loss

    # A checkpoint as the code before the option wrote it (no "label_smoothing"), interrupted in epoch 2.
    real_save, real_epoch = train_module.save_checkpoint, train_module._train_one_epoch

    def old_format(path, model, optimizer, scheduler, epoch, history, config):
        real_save(path, model, optimizer, scheduler, epoch, history,
                  {key: value for key, value in config.items() if key != "label_smoothing"})

    def interrupted_in_epoch_2(*args):
        if args[5] == 1:
            raise KeyboardInterrupt
        return real_epoch(*args)

    with monkeypatch.context() as patched:
        patched.setattr(train_module, "save_checkpoint", old_format)
        patched.setattr(train_module, "_train_one_epoch", interrupted_in_epoch_2)
        assert main([*run, "--out", str(old)]) == 130
    before = load_checkpoint(old / "checkpoint.npz")
    assert before.epoch == 1 and "label_smoothing" not in before.config

    # --resume changes nothing it recorded: asking for smoothing is refused, the option's default is not.
    err = one_line_error(capsys, ["train", "--resume", str(old / "checkpoint.npz"), "--label-smoothing", "0.1"])
    assert "--label-smoothing 0.1 (the run's: 0.0)" in err
    assert main(["train", "--resume", str(old / "checkpoint.npz"), "--no-progress"]) == 0
    b = load_checkpoint(old / "checkpoint.npz")
    assert b.epoch == 2 and b.config["label_smoothing"] == 0.0
    assert b.history["train_loss"] == a.history["train_loss"] and b.history["val_loss"] == a.history["val_loss"]
    for key, value in a.model.state_dict().items():
        np.testing.assert_array_equal(value, b.model.state_dict()[key], err_msg=key)


def test_the_checkpoint_schema_checks_label_smoothing():
    for value in (2, -0.5, "0.1"):
        with pytest.raises(weights.ModelFileError, match="training.config.label_smoothing"):
            check_training("run.npz", {"training": {"epoch": 1, "config": {"label_smoothing": value}}})
    for config in ({"label_smoothing": 0.1}, {"label_smoothing": None}, {}):
        assert check_training("run.npz", json.loads(json.dumps({"training": {"epoch": 1, "config": config}})))
