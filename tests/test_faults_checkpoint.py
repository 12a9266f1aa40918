"""Checkpoints under faults: a training process killed again and again, and damaged checkpoint files.

The kill test runs this file as a script (the "driver", at the bottom): it
trains a tiny ResNet for many one-step-long epochs, writing a checkpoint
after each, and resumes from the checkpoint on disk when there is one. The
test starts the driver, kills it with SIGKILL — half the time at a random
moment, half the time while it is writing a checkpoint — and starts it
again, over and over. After every kill the checkpoint on disk must load and
must hold at least every epoch the driver reported saved; at the end, the
run resumed from it must finish with weights bit-identical to those of a run
that was never interrupted.

To make the kills land inside writes often, the driver writes like a slow
disk: ``numpy.savez`` builds the archive in memory and then hands it to the
file in small pieces with a short sleep between them (announcing the start
and end on stdout). How the file is opened, named and renamed is left
entirely to the library, so a checkpoint written in place instead of
atomically leaves a truncated file behind and fails this test.
"""

import io
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from resnet_np import backend
from resnet_np.checkpoint import load_checkpoint, save_checkpoint
from resnet_np.data import DataLoader, Dataset
from resnet_np.models import CifarResNet, load, load_torch_state_dict, resnet20, resnet32, save
from resnet_np.optim import SGD, CosineAnnealingLR
from resnet_np.train import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 100            # the driver's run; the kills stop it long before the end
KILLS = 24              # the acceptance asks for at least 20
WRITE_CHUNK = 64 << 10  # the slow disk: bytes per write() ...
WRITE_PAUSE = 0.002     # ... and seconds between two writes (a ~600 KB checkpoint takes ~20 ms)


# -- the run the driver makes (and the tests below reuse) --------------------------------------

def tiny_dataset(n, seed):
    """Learnable 8x8 images: a bright row (class 0), column (1) or diagonal (2) in noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 8, 8))
    pos = rng.integers(1, 7, n)
    for k in range(n):
        if labels[k] == 0:
            images[k, 0, pos[k], :] = 255
        elif labels[k] == 1:
            images[k, 0, :, pos[k]] = 255
        else:
            images[k, 0, np.arange(8), np.arange(8)] = 255
    return Dataset(images.astype(np.uint8), labels, ["row", "column", "diagonal"], (0.3,), (0.3,), name="bars")


def build(seed=0, epochs=EPOCHS):
    """A ResNet-8 (74,547 parameters), two steps an epoch, SGD with momentum and a cosine schedule."""
    backend.manual_seed(seed)
    model = CifarResNet(1, num_classes=3, in_channels=1)
    train = DataLoader(tiny_dataset(16, seed), batch_size=8, shuffle=True, drop_last=True, seed=seed,
                       augment="digits")
    val = DataLoader(tiny_dataset(8, seed + 1), batch_size=8, shuffle=False)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = CosineAnnealingLR(opt, T_max=epochs * len(train))
    return model, train, val, opt, sched


def quiet(*args, **kwargs):
    pass


def drive(out_dir, slow):
    """What the driver process does: train to EPOCHS, resuming from out_dir/checkpoint.npz if it is there."""
    from resnet_np import train as train_module

    def say(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    if slow:
        real_savez = np.savez

        def slow_savez(file, *args, **kwargs):
            buffer = io.BytesIO()
            real_savez(buffer, *args, **kwargs)
            data = buffer.getvalue()
            own = isinstance(file, (str, os.PathLike))
            f = open(file, "wb") if own else file
            say("write-start")
            for start in range(0, len(data), WRITE_CHUNK):
                f.write(data[start:start + WRITE_CHUNK])
                f.flush()  # the bytes reach the file now, as a slow disk would take them
                time.sleep(WRITE_PAUSE)
            if own:
                f.close()
            say("write-end")

        np.savez = slow_savez

    real_save_checkpoint = train_module.save_checkpoint

    def save_and_report(path, model, optimizer, scheduler, epoch, history, config):
        real_save_checkpoint(path, model, optimizer, scheduler, epoch, history, config)
        say(f"saved {epoch}")  # only once save_checkpoint has returned

    train_module.save_checkpoint = save_and_report
    train_module.save_curves = quiet  # the plot is not what this test is about, and costs 50 ms an epoch

    path = os.path.join(out_dir, "checkpoint.npz")
    model, train, val, opt, sched = build()
    say("ready")
    fit(model, train, val, EPOCHS, opt, sched, out_dir=out_dir, resume=path if os.path.exists(path) else None,
        progress=False, log=quiet)
    say("done")


# -- the kill test ---------------------------------------------------------------------------

class Driver:
    """The driver as a child process, its stdout lines arriving in a queue."""

    started = []  # every driver process, so that a failing test leaves none behind

    def __init__(self, out_dir, slow):
        env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(out_dir)]
                                        + (["--slow"] if slow else []),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        cwd=ROOT)
        Driver.started.append(self.process)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()
        self.saved = []  # the epochs whose save_checkpoint has returned

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line.strip())
        put(None)

    def wait_for(self, wanted, count=1, timeout=60):
        """Read lines until ``wanted`` has been seen ``count`` times; False if the driver ended first."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                return False
            if line.startswith("saved "):
                self.saved.append(int(line.split()[1]))
            if line == wanted:
                count -= 1
                if count == 0:
                    return True

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)
        self.wait_for("(the end of its output)")  # read what it printed before it died

    def finish(self, timeout=120):
        ended = self.wait_for("done", timeout=timeout)
        self.process.wait(timeout=60)
        assert ended and self.process.returncode == 0, "".join(self.stderr)


def temporary_files(folder):
    return {name for name in os.listdir(folder) if name.endswith(".tmp")}


def fresh_state(path):
    """Load ``path`` as fit(resume=...) would: into a new model, optimizer and schedule."""
    model, _, _, opt, sched = build()
    return load_checkpoint(path, model=model, optimizer=opt, scheduler=sched), model, opt


@pytest.fixture
def no_driver_left_behind():
    yield
    for process in Driver.started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
    Driver.started.clear()


def test_sigkill_at_random_moments_and_inside_checkpoint_writes_loses_nothing(tmp_path, no_driver_left_behind):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir()
    reference.mkdir()
    straight = Driver(reference, slow=False)  # the uninterrupted run, meanwhile on the other core
    rng = random.Random(0)
    kills = kills_inside_writes = 0
    known_tmp = set()
    on_disk = 0  # the epoch of the checkpoint on disk
    while kills < KILLS:
        driver = Driver(killed, slow=True)
        if kills % 2 == 0:
            # Inside a write: some milliseconds after the first or second write starts.
            alive = driver.wait_for("write-start", count=rng.randint(1, 2))
            time.sleep(rng.uniform(0, 0.02))
        else:
            # Anywhere: loading the checkpoint, training, evaluating, writing.
            alive = driver.wait_for("ready")
            time.sleep(rng.uniform(0, 0.15))
        assert alive and driver.process.poll() is None, "the run ended before it could be killed: raise EPOCHS"
        driver.kill()
        kills += 1

        left = temporary_files(killed) - known_tmp  # a temporary file left behind: the kill hit a write
        kills_inside_writes += bool(left)
        known_tmp |= left
        path = killed / "checkpoint.npz"
        if not path.exists():
            assert driver.saved == [] and on_disk == 0, f"kill {kills}: the checkpoint has disappeared"
            continue
        state, _, _ = fresh_state(path)  # it loads: a ValueError here is a lost checkpoint
        assert state.epoch >= max(driver.saved, default=0), f"kill {kills}: a saved epoch was lost"
        assert state.epoch >= on_disk, f"kill {kills}: the checkpoint went back in time"
        assert state.history["epoch"] == list(range(1, state.epoch + 1))
        on_disk = state.epoch

    print(f"\n{kills} kills, {kills_inside_writes} of them inside a checkpoint write; "
          f"the last one left epoch {on_disk} of {EPOCHS} on disk")
    assert kills >= 20
    assert kills_inside_writes >= KILLS // 4, "too few kills landed inside a write to prove anything"

    # Resumed once more (at full speed), the run finishes: exactly as if it had never been interrupted.
    Driver(killed, slow=False).finish()
    straight.finish()
    assert temporary_files(killed) == set()  # the leftovers of the killed writes were cleaned up
    resumed, model, opt = fresh_state(killed / "checkpoint.npz")
    uninterrupted, model_ref, opt_ref = fresh_state(reference / "checkpoint.npz")
    assert resumed.epoch == uninterrupted.epoch == EPOCHS
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, model_ref.state_dict()[key], err_msg=key)
    for p, p_ref in zip(model.parameters(), model_ref.parameters()):
        np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], opt_ref.state[p_ref]["momentum_buffer"])
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert resumed.history[key] == uninterrupted.history[key], key


# -- damaged and mismatched checkpoints --------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    """The bytes of a real training checkpoint after one epoch of the tiny run."""
    folder = tmp_path_factory.mktemp("good")
    model, train, val, opt, sched = build(epochs=2)
    fit(model, train, val, 1, opt, sched, out_dir=str(folder), progress=False, log=quiet)
    return (folder / "checkpoint.npz").read_bytes()


def resume_from(path, epochs=2):
    """fit(resume=path) with a fresh tiny run, as the command line would."""
    model, train, val, opt, sched = build(epochs=epochs)
    return fit(model, train, val, epochs, opt, sched, resume=str(path), progress=False, log=quiet)


def test_a_good_checkpoint_resumes(tmp_path, checkpoint_bytes):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(checkpoint_bytes)
    assert resume_from(path)["epoch"] == [1, 2]


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoint(tmp_path, checkpoint_bytes, fraction):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(checkpoint_bytes[:int(len(checkpoint_bytes) * fraction)])
    with pytest.raises(ValueError, match=r"checkpoint.npz is not a resnet_np checkpoint \(truncated or corrupted"):
        resume_from(path)


def known_weak_spots(data):
    """Offsets and new values of bytes whose damage once loaded silently or raised an unclear error."""
    npy = data.index(b"\x93NUMPY\x01\x00")  # the first array's .npy header
    descr = data.index(b"'descr': '<f4'", npy)
    central = data.index(b"PK\x01\x02")  # the zip directory's first entry
    return [
        (npy + 8, ord("C")),         # the .npy header length: the array starts inside its header
        (descr + 12, ord("2")),      # '<f4' -> '<f2': half the bytes read as float16, the rest never
        (central + 10, 0xFF),        # compression method 255: NotImplementedError from zipfile
        (central + 8, 0x01),         # the "encrypted" flag: RuntimeError from zipfile
        (central + 6, 0xFF),         # the version needed to extract
        (data.index(b"'shape'", npy) + 10, ord("1")),  # another shape
        # In the zip directory, "optimizer/state/0/..." renamed "optimizer/state/1/...": two entries of
        # that name, one momentum buffer silently gone.
        (data.rindex(b"optimizer/state/0/") + len("optimizer/state/"), ord("1")),
    ]


def test_every_corrupted_byte_is_refused_or_harmless(tmp_path, checkpoint_bytes):
    """Damage single bytes all over the file: loading either refuses with a ValueError naming the file,
    or gets exactly the saved state (the byte was one no reader looks at, such as a timestamp).
    Never another exception, never different numbers."""
    good = tmp_path / "good.npz"
    good.write_bytes(checkpoint_bytes)
    expected, model, opt = fresh_state(good)
    expected_weights = {k: v.copy() for k, v in model.state_dict().items()}
    expected_momentum = [opt.state[p]["momentum_buffer"].copy() for p in model.parameters()]
    rng = np.random.default_rng(0)
    size = len(checkpoint_bytes)
    zip_structure = [i for i in range(size) if i < 300 or i > size - 6000]  # headers and the zip directory
    damages = known_weak_spots(checkpoint_bytes)
    damages += [(int(i), int(checkpoint_bytes[i]) ^ 0xFF) for i in rng.choice(size, 40, replace=False)]
    damages += [(int(i), int(rng.integers(256))) for i in rng.choice(zip_structure, 80, replace=False)]
    path = tmp_path / "checkpoint.npz"
    refused = 0
    for offset, value in damages:
        if checkpoint_bytes[offset] == value:
            continue
        damaged = bytearray(checkpoint_bytes)
        damaged[offset] = value
        path.write_bytes(bytes(damaged))
        try:
            state, model, opt = fresh_state(path)
        except ValueError as e:
            assert str(path) in str(e), f"byte {offset}: {e}"
            refused += 1
            continue
        assert state.epoch == expected.epoch and state.history == expected.history, f"byte {offset}"
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(value, expected_weights[key], err_msg=f"byte {offset}: {key}")
        for p, momentum in zip(model.parameters(), expected_momentum):
            np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], momentum, err_msg=f"byte {offset}")
    assert refused > len(damages) // 2


def rewrite_meta(source_bytes, path, **changes):
    """Write to ``path`` the checkpoint ``source_bytes`` with its JSON metadata changed."""
    with np.load(io.BytesIO(source_bytes), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    meta.update(changes)
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_checkpoint_of_a_newer_format_version(tmp_path, checkpoint_bytes):
    path = tmp_path / "checkpoint.npz"
    rewrite_meta(checkpoint_bytes, path, format_version=2)
    with pytest.raises(ValueError, match=r"checkpoint.npz has format version 2, but this resnet_np reads "
                                         r"versions up to 1: upgrade resnet_np"):
        resume_from(path)
    rewrite_meta(checkpoint_bytes, path, format_version="1")
    with pytest.raises(ValueError, match=r"checkpoint.npz: format_version must be a positive int, got '1'"):
        resume_from(path)


def test_checkpoint_of_another_dtype(tmp_path, checkpoint_bytes):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(checkpoint_bytes)
    model, _, _, opt, sched = build()
    before = model.conv1.weight.data.copy()
    with pytest.raises(ValueError, match=r"checkpoint.npz holds float32 weights, but the model to load them "
                                         r"into is float64: convert the model first \(model.astype\('float32'\)\)"):
        load_checkpoint(path, model=model.astype("float64"), optimizer=opt, scheduler=sched)
    np.testing.assert_array_equal(model.conv1.weight.data, before)  # refused before anything was loaded

    model64 = CifarResNet(1, num_classes=3, in_channels=1).astype("float64")
    save_checkpoint(path, model64, SGD(model64.parameters(), lr=0.1, momentum=0.9), epoch=1)
    with pytest.raises(ValueError, match="checkpoint.npz holds float64 weights, but the model to load them into "
                                         "is float32"):
        resume_from(path)
    model, _, _, opt, _ = build()
    model.astype("float64")
    assert load_checkpoint(path, model=model, optimizer=opt).epoch == 1  # converted, it loads


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "checkpoint.npz"
    other = resnet20(num_classes=3, in_channels=1)
    save_checkpoint(path, other, SGD(other.parameters(), lr=0.1), epoch=1)
    target = resnet32(num_classes=3, in_channels=1)
    with pytest.raises(ValueError, match="checkpoint.npz holds a resnet20, but the model to load it into is a "
                                         "resnet32"):
        load_checkpoint(path, model=target, optimizer=SGD(target.parameters(), lr=0.1))
    # Models without an architecture name: the keys that do not match, every one of them.
    with pytest.raises(ValueError, match=r"(?s)checkpoint.npz: .*unexpected keys: layer1.1.conv1.weight"):
        resume_from(path)
    # The same architecture built for another number of classes: the shapes that do not match.
    other = CifarResNet(1, num_classes=5, in_channels=1)
    save_checkpoint(path, other, SGD(other.parameters(), lr=0.1), epoch=1)
    with pytest.raises(ValueError, match=r"(?s)checkpoint.npz: .*fc.weight: expected shape \(3, 64\), "
                                         r"got \(5, 64\)"):
        resume_from(path)


def test_model_file_or_missing_file_instead_of_a_checkpoint(tmp_path):
    model, *_ = build()
    save(model, tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="weights.npz holds model weights only, not a training checkpoint"):
        resume_from(tmp_path / "weights.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint file at .*nothing.npz"):
        resume_from(tmp_path / "nothing.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="plain.npz has no '__meta__' entry"):
        resume_from(tmp_path / "plain.npz")


def test_zip_of_something_else(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not arrays")
    with pytest.raises(ValueError, match="checkpoint.npz"):
        resume_from(path)


# -- files that would run code ------------------------------------------------------------------

class RunsAShellCommand:
    """Unpickled, this runs a shell command: what a malicious file would hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_checkpoint_with_a_pickle_inside_is_refused_without_running_it(tmp_path, checkpoint_bytes):
    marker = tmp_path / "pwned"
    with np.load(io.BytesIO(checkpoint_bytes), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    evil = np.empty(1, dtype=object)
    evil[0] = RunsAShellCommand(f"touch {marker}")
    arrays["optimizer/state/0/momentum_buffer"] = evil  # np.savez pickles an object array
    path = tmp_path / "checkpoint.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="checkpoint.npz is not a resnet_np checkpoint .*allow_pickle=False"):
        resume_from(path)
    with pytest.raises(ValueError, match="checkpoint.npz is not a resnet_np checkpoint .*allow_pickle=False"):
        load(path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)["optimizer/state/0/momentum_buffer"]  # it really was dangerous:
    assert marker.exists()                                                # unpickling ran the command


def test_a_torch_file_with_code_inside_is_refused_without_running_it(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "resnet20.pth"
    torch.save({"conv1.weight": RunsAShellCommand(f"touch {marker}")}, path)
    with pytest.raises(ValueError, match=r"resnet20.pth: it holds a pickled Python object \((posix|os).system\)") as e:
        load_torch_state_dict(resnet20(), path)
    assert "weights_only" not in str(e.value)  # torch's advice to turn the protection off is not passed on
    assert not marker.exists()


def calls_in(source, function):
    """The text of every call of ``function`` (such as "torch.load") in ``source``, arguments included."""
    calls, start = [], source.find(function + "(")
    while start != -1:
        depth, end = 0, start + len(function)
        for end in range(start + len(function), len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0:
                break
        calls.append(source[start:end + 1])
        start = source.find(function + "(", end)
    return calls


def test_every_load_in_the_package_refuses_code():
    """What the README's security note promises, checked in the source: NumPy loads never unpickle,
    torch loads take weights only."""
    package = os.path.join(ROOT, "resnet_np")
    numpy_loads, torch_loads = [], []
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as f:
                    source = f.read()
                where = os.path.relpath(os.path.join(folder, name), ROOT)
                for function in ("host.load", "np.load", "numpy.load"):
                    numpy_loads += [(where, call) for call in calls_in(source, function)]
                torch_loads += [(where, call) for call in calls_in(source, "torch.load")]
    assert numpy_loads and torch_loads
    for where, call in numpy_loads:
        assert "allow_pickle=False" in call, f"{where}: {call}"
    for where, call in torch_loads:
        assert "weights_only=True" in call, f"{where}: {call}"


if __name__ == "__main__":
    drive(sys.argv[1], slow="--slow" in sys.argv[2:])
