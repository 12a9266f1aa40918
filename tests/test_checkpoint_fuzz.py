"""Checkpoint metadata against hypothesis: any JSON in any field gives a checkpoint or one error naming the file.

The JSON metadata of a checkpoint says what to build (architecture, number
of classes, input channels) and what to restore (epoch, history, optimizer,
schedule, random state, the run's settings). A file damaged, edited by hand
or written by another program can put any JSON value in any of those
fields. Every such file must either load or be refused with one
``ValueError`` whose message names the file and the field — never a
``KeyError``, ``TypeError`` or ``AttributeError`` from deep inside, and
never an attempt to build a network of 10**9 classes (a 477 GiB classifier)
before the shapes in the file were compared.

Each example changes one field of a real checkpoint (or deletes it, or adds
an unknown one) and loads the result three ways: ``models.load`` (what
``evaluate`` does), ``load_checkpoint`` into a model with its optimizer and
schedule (what ``train --resume`` does) and ``read_training_config``.
"""

import json
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_np import backend, models
from resnet_np.checkpoint import load_checkpoint, read_training_config, save_checkpoint
from resnet_np.models import load, resnet20
from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup

CONFIG = {"dataset": "mnist", "model": "resnet20", "shortcut": None, "epochs": 3, "batch_size": 32,
          "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
          "warmup_steps": 2, "augment": "auto", "train_size": 64, "test_size": 32, "seed": 0, "image_size": None,
          "val_fraction": None}


def run_parts():
    model = resnet20(num_classes=3, in_channels=1)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = LinearWarmup(opt, warmup_steps=2, after=CosineAnnealingLR(opt, T_max=4))
    return model, opt, sched


@pytest.fixture(scope="module")
def good():
    """The arrays and metadata of a real checkpoint after one step (so momentum buffers exist)."""
    model, opt, sched = run_parts()
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    sched.step()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/c.npz"
        save_checkpoint(path, model, opt, sched, epoch=1, history={"epoch": [1], "train_loss": [1.5]}, config=CONFIG)
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    return Good(arrays, json.loads(str(arrays.pop("__meta__")[()])))


class Good(tuple):
    """(arrays, meta), shown briefly: hypothesis prints its arguments when an example fails."""

    def __new__(cls, arrays, meta):
        return super().__new__(cls, (arrays, meta))

    def __repr__(self):
        return "<the arrays and metadata of a real checkpoint>"


def paths_of(value, prefix=()):
    """Every path into the JSON ``value`` (into dicts by key, into lists by their first index)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list) and value:
        yield from paths_of(value[0], (*prefix, 0))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([0, 1, -1, 10**9, 2**31, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8) | st.sampled_from(["A", "B", "SGD"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def changed(meta, path, action, value):
    meta = json.loads(json.dumps(meta))
    if not path:
        return value if action == "set" else meta
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    if action == "set":
        parent[path[-1]] = value
    elif action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["unknown_field"] = value
    return meta


def write(path, arrays, meta):
    with open(path, "wb") as f:
        np.savez(f, **arrays, __meta__=np.array(json.dumps(meta)))


def must_load_or_name_the_file(path, load_it):
    try:
        load_it()
    except ValueError as e:
        assert str(e).startswith(str(path)), str(e)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_in_any_metadata_field_loads_or_names_the_file_and_field(good, tmp_path, data):
    arrays, meta = good
    path = data.draw(st.sampled_from(list(paths_of(meta))), label="path")
    action = data.draw(st.sampled_from(["set", "set", "set", "delete", "add"]), label="action")
    value = data.draw(JSON, label="value")
    file = tmp_path / "fuzzed.npz"
    write(file, arrays, changed(meta, path, action, value))
    state = backend.get_rng_state()
    try:
        must_load_or_name_the_file(file, lambda: load(file))
        must_load_or_name_the_file(file, lambda: read_training_config(file))
        model, opt, sched = run_parts()
        must_load_or_name_the_file(file, lambda: load_checkpoint(file, model=model, optimizer=opt, scheduler=sched))
        must_load_or_name_the_file(file, lambda: load_checkpoint(file))
    finally:
        backend.set_rng_state(state)


@pytest.mark.parametrize("field, value, fragment", [
    ("num_classes", 10**9, "config.num_classes must be an int from 1 to 100000, got 1000000000"),
    ("num_classes", 4, "config.num_classes says 4, but fc.weight in the file has shape (3, 64)"),
    ("num_classes", "3", "config.num_classes must be an int"),
    ("num_classes", True, "config.num_classes must be an int"),
    ("in_channels", 3, "config.in_channels says 3, but conv1.weight in the file has shape (16, 1, 3, 3)"),
    ("shortcut", "C", "config.shortcut must be one of 'A', 'B'"),
])
def test_a_model_field_of_the_wrong_type_or_range_is_refused_before_anything_is_built(
        good, tmp_path, monkeypatch, field, value, fragment):
    arrays, meta = good
    meta = json.loads(json.dumps(meta))
    meta["config"][field] = value
    write(tmp_path / "c.npz", arrays, meta)

    def never(**config):
        raise AssertionError(f"a network was built from config {config}")
    monkeypatch.setitem(models.ARCHITECTURES, "resnet20", never)  # a 477 GiB build fails here, not the machine
    for load_it in (load, load_checkpoint, read_training_config):
        with pytest.raises(ValueError) as error:
            load_it(tmp_path / "c.npz")
        assert str(error.value).startswith(f"{tmp_path / 'c.npz'}: metadata field ") and fragment in str(error.value)


@pytest.mark.parametrize("field, value, fragment", [
    ("epoch", "1", "training.epoch must be an int from 0 to 10000000, got '1'"),
    ("epoch", -1, "training.epoch must be an int"),
    ("history", {"epoch": 1}, "training.history must be a JSON object of lists of numbers"),
    ("history", [], "training.history must be"),
    ("config", "mnist", "training.config must be a JSON object"),
    ("rng_state", {"bit_generator": "MT19937"}, "training.rng_state must be a PCG64 generator's state"),
    ("optimizer", {"class": "SGD"}, "training.optimizer.param_groups must be present"),
    ("optimizer", [], "training.optimizer must be a JSON object"),
    ("scheduler", 7, "training.scheduler must be a JSON object"),
])
def test_a_training_field_of_the_wrong_type_or_range_is_refused_naming_it(good, tmp_path, field, value, fragment):
    arrays, meta = good
    meta = json.loads(json.dumps(meta))
    meta["training"][field] = value
    write(tmp_path / "c.npz", arrays, meta)
    model, opt, sched = run_parts()
    with pytest.raises(ValueError) as error:
        load_checkpoint(tmp_path / "c.npz", model=model, optimizer=opt, scheduler=sched)
    assert str(error.value).startswith(str(tmp_path / "c.npz")) and fragment in str(error.value), str(error.value)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", "3"), ("batch_size", -1), ("lr", "0.1"),
                                          ("lr", float("nan")), ("seed", -1), ("val_fraction", 1.5),
                                          ("image_size", 10**9), ("std", [0.0])])
def test_the_run_settings_a_resume_rebuilds_from_are_checked_too(good, tmp_path, field, value):
    arrays, meta = good
    meta = json.loads(json.dumps(meta))
    meta["training"]["config"][field] = value
    write(tmp_path / "c.npz", arrays, meta)
    with pytest.raises(ValueError, match=f"metadata field training.config.{field} must be"):
        read_training_config(tmp_path / "c.npz")


def test_a_stray_array_or_a_refused_optimizer_state_names_the_file(good, tmp_path):
    arrays, meta = good
    write(tmp_path / "c.npz", {**arrays, "optimizer/x": np.zeros(2)}, meta)
    with pytest.raises(ValueError, match="an array named 'optimizer/x', where only model weights and"):
        load_checkpoint(tmp_path / "c.npz")
    meta = json.loads(json.dumps(meta))
    meta["training"]["optimizer"]["param_groups"][0]["params"] = [0, 1]
    write(tmp_path / "c.npz", arrays, meta)
    model, opt, sched = run_parts()
    with pytest.raises(ValueError, match="c.npz: cannot restore training.optimizer: "):
        load_checkpoint(tmp_path / "c.npz", model=model, optimizer=opt, scheduler=sched)
