"""Host<->device traffic of a training step on the GPU path, counted by the strict CuPy stand-in.

On a GPU, every read of a value (``float(loss)``, ``int(labels.max())``,
``bool(...)``) makes the host wait until the GPU has finished everything
queued, and every upload is a copy over the bus. The budget of one step of
``fit``:

* uploads: the batch and its labels (the normalisation mean and std stay on
  the device from the first batch on);
* one synchronisation: the logged loss and the NaN/Inf check of the
  gradients, read together;
* per epoch: one read of the accuracy count, accumulated on the device; the
  labels' range checked once per dataset, on the host, not per batch.

``evaluate`` reads the device once per pass, whatever its number of
batches (the loss sum, the correct count and the labels' range together),
and dropout draws its masks on the device (no upload per step).

The counts come from ``resnet_np.cupy_strict`` (CuPy's rules emulated on
NumPy, not a GPU): they count what the code asks for, which is what a GPU
would be asked.
"""

import numpy as np
import pytest

from resnet_np import backend, cupy_strict
from resnet_np import layers as L
from resnet_np import models as M
from resnet_np.data import Dataset
from resnet_np.data.loader import DataLoader
from resnet_np.optim import SGD, CosineAnnealingLR
from resnet_np.train import TrainingDiverged, evaluate, fit


def tiny_dataset(n, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), rng.integers(0, classes, n),
                   [f"c{i}" for i in range(classes)], (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), name="tiny")


def traffic_of_fit(steps_per_epoch, epochs, batch=4, num_classes=4):
    backend.use("cupy-strict")
    backend.manual_seed(0)
    model = M.CifarResNet(1, num_classes=num_classes)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = CosineAnnealingLR(optimizer, steps_per_epoch * epochs)
    loader = DataLoader(tiny_dataset(steps_per_epoch * batch), batch_size=batch, augment="cifar")
    with cupy_strict.counting() as traffic:
        history = fit(model, loader, None, epochs, optimizer, scheduler, progress=False, log=lambda *a: None)
    assert len(history["train_loss"]) == epochs
    return traffic


def test_a_training_step_uploads_its_batch_and_synchronises_once():
    short, long = traffic_of_fit(2, 1), traffic_of_fit(5, 1)
    why = f"\nthe 5-step epoch's traffic:\n{long.summary()}"
    per_step_uploads = (long.uploads - short.uploads) / 3
    per_step_syncs = (long.synchronizations - short.synchronizations) / 3
    assert per_step_uploads == 2, f"{per_step_uploads} uploads per step, not 2 (images, labels){why}"
    assert per_step_syncs <= 1, f"{per_step_syncs} synchronisations per step, not 1 (loss + NaN check){why}"
    once = long.synchronizations - 5 * per_step_syncs
    assert once <= 1, f"{once} synchronisations outside the steps of an epoch, not 1 (the accuracy){why}"
    assert long.uploads - 5 * per_step_uploads <= 2, f"constants uploaded more than once (mean, std){why}"


def test_the_constants_stay_on_the_device_across_epochs():
    one, three = traffic_of_fit(2, 1), traffic_of_fit(2, 3)
    assert three.uploads - one.uploads == 2 * 2 * 2, three.summary()  # batches and labels only
    assert three.synchronizations - one.synchronizations <= 2 * (2 + 1), three.summary()


def test_labels_beyond_the_models_classes_are_still_refused_once_per_dataset():
    """The per-batch range check left the loss on the device: fit checks the dataset's labels instead."""
    backend.use("cupy-strict")
    model = M.CifarResNet(1, num_classes=3)  # the dataset has 4 classes
    loader = DataLoader(tiny_dataset(8, classes=4), batch_size=4)
    optimizer = SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="label"):
        fit(model, loader, None, 1, optimizer, progress=False, log=lambda *a: None)


def test_a_nan_weight_still_stops_training_on_the_device():
    """Reading the loss with the gradient check must not let a NaN step through."""
    backend.use("cupy-strict")
    model = M.CifarResNet(1, num_classes=4)
    model.conv1.weight.data[0, 0, 0, 0] = float("nan")
    optimizer = SGD(model.parameters(), lr=0.05)
    before = {k: backend.to_numpy(p.data).copy() for k, p in model.named_parameters()}
    with pytest.raises(TrainingDiverged, match="NaN"):
        fit(model, DataLoader(tiny_dataset(8), batch_size=4), None, 1, optimizer, progress=False,
            log=lambda *a: None)
    for key, p in model.named_parameters():  # the faulty step was not applied
        np.testing.assert_array_equal(backend.to_numpy(p.data), before[key], err_msg=key)


def traffic_of_evaluate(batches, batch=4, labels_from=0):
    backend.use("cupy-strict")
    backend.manual_seed(0)
    model = M.CifarResNet(1, num_classes=4)
    data = tiny_dataset(batches * batch)
    loader = DataLoader(data, batch_size=batch, shuffle=False)
    with cupy_strict.counting() as traffic:
        loss, accuracy = evaluate(model, loader)
    backend.use("numpy")
    assert (loss, accuracy) == pytest.approx(evaluate(model.to("numpy"), DataLoader(data, batch_size=batch,
                                                                                    shuffle=False)), rel=1e-5)
    return traffic


def test_an_evaluate_pass_reads_the_device_once_whatever_its_length():
    short, long = traffic_of_evaluate(2), traffic_of_evaluate(6)
    why = f"\nthe 6-batch pass's traffic:\n{long.summary()}"
    assert long.synchronizations == short.synchronizations <= 1, f"{long.synchronizations} reads, not 1{why}"
    assert (long.uploads - short.uploads) / 4 == 2, f"not 2 uploads per batch (images, labels){why}"


def test_evaluate_still_refuses_labels_beyond_the_models_classes_on_the_device():
    backend.use("cupy-strict")
    model = M.CifarResNet(1, num_classes=4)
    data = tiny_dataset(8, classes=4)
    data.labels[5] = -1  # read with the sums at the end (a label of 4 would fail the stand-in's indexing first)
    with pytest.raises(ValueError, match=r"evaluate: the labels must be in \[0, 3\] .* got -1"):
        evaluate(model, DataLoader(data, batch_size=4, shuffle=False))


def test_dropout_draws_its_mask_on_the_device():
    backend.use("cupy-strict")
    x = cupy_strict.ones((4, 8, 3, 3), dtype="float32")
    layer = L.Dropout(0.5)
    with cupy_strict.counting() as traffic:
        out = layer(x)
        layer.backward(out)
    assert traffic.uploads == 0 and traffic.synchronizations == 0, traffic.summary()
    assert isinstance(layer.mask, cupy_strict.ndarray)
    backend.manual_seed(7)
    first = layer(x).get()
    backend.manual_seed(7)
    np.testing.assert_array_equal(layer(x).get(), first)  # seeded on the device too
    assert not np.array_equal(layer(x).get(), first)


def test_a_training_step_with_dropout_uploads_no_mask():
    """A wide ResNet with dropout: still the batch and its labels only."""
    def uploads(steps):
        backend.use("cupy-strict")
        backend.manual_seed(0)
        model = M.wrn(10, 1, dropout=0.3, num_classes=4)
        loader = DataLoader(tiny_dataset(steps * 4), batch_size=4)
        with cupy_strict.counting() as traffic:
            fit(model, loader, None, 1, SGD(model.parameters(), lr=0.05), progress=False, log=lambda *a: None)
        return traffic
    short, long = uploads(1), uploads(3)
    assert (long.uploads - short.uploads) / 2 == 2, long.summary()
