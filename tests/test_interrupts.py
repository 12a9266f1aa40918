"""Ctrl-C and SIGTERM at any moment of a run, inside a checkpoint's write included.

What must hold, whenever the signal comes: the run leaves either the new
checkpoint or the previous one (never a half-written file, never none
where there was one), whatever it reports saved is on disk and loads, and
no temporary file is left behind.

The moments inside a write are chosen deterministically: a profile hook
(``sys.setprofile``) counts every Python and C function call the write
makes (the archive's pieces, flush, fsync, chmod, rename, ...) and sends
the process a real SIGINT at the n-th one, for 24 values of n spread from
the first call to the last. Then real short ``train`` runs, in a
subprocess, get a real SIGINT or SIGTERM.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_faults_checkpoint import build, quiet
from test_image_folder import tiny_folder

from resnet_np import train as train_module
from resnet_np.__main__ import main
from resnet_np.atomic import signals_deferred, write_atomically
from resnet_np.checkpoint import load_checkpoint
from resnet_np.train import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOMENTS = 24  # the acceptance asks for at least 20


def temporary_files(folder):
    return glob.glob(os.path.join(glob.escape(str(folder)), ".*.tmp"))


class SignalInsideSave:
    """Wraps ``save_checkpoint``: during its ``write``-th call, a SIGINT at the ``moment``-th function call."""

    def __init__(self, real, moment=None, write=1, sig=signal.SIGINT):
        self.real, self.moment, self.write, self.sig = real, moment, write, sig
        self.calls = self.events = 0

    def profile(self, frame, event, arg):
        if event in ("call", "c_call"):
            self.events += 1
            if self.events == self.moment:
                sys.setprofile(None)
                os.kill(os.getpid(), self.sig)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls != self.write:
            return self.real(*args, **kwargs)
        sys.setprofile(self.profile)
        try:
            return self.real(*args, **kwargs)
        finally:
            sys.setprofile(None)
            if self.moment is not None and self.events < self.moment:  # a write of fewer calls than counted
                os.kill(os.getpid(), self.sig)


def count_events(monkeypatch, tmp_path):
    """How many function calls the first checkpoint write of the tiny run makes."""
    counter = SignalInsideSave(train_module.save_checkpoint)
    monkeypatch.setattr(train_module, "save_checkpoint", counter)
    model, train, val, opt, sched = build(epochs=1)
    fit(model, train, val, 1, opt, sched, out_dir=str(tmp_path / "count"), progress=False, log=quiet)
    monkeypatch.undo()
    return counter.events


def interrupted_run(monkeypatch, out, moment, write):
    """The tiny run with a SIGINT at ``moment`` of checkpoint write ``write`` (its last); (history, log)."""
    real = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", SignalInsideSave(real, moment, write))
    said = []
    model, train, val, opt, sched = build(epochs=write)
    try:
        history = fit(model, train, val, write, opt, sched, out_dir=str(out), progress=False, log=said.append)
    finally:
        monkeypatch.setattr(train_module, "save_checkpoint", real)  # (monkeypatch.undo would undo quick_curves)
    return history, said


def quick_curves(history, path, *args):
    """The curves written as atomically as ``save_curves`` writes them, without matplotlib's half second."""
    write_atomically(path, lambda f: f.write(b"curves"))


def test_sigint_at_24_moments_of_a_checkpoint_write_leaves_what_the_run_says(tmp_path, monkeypatch):
    total = count_events(monkeypatch, tmp_path)
    monkeypatch.setattr(train_module, "save_curves", quick_curves)
    assert total > 500  # the write really was watched: every piece of the archive is a call
    moments = sorted({1 + k * (total - 1) // (MOMENTS - 1) for k in range(MOMENTS)})
    assert len(moments) == MOMENTS
    for k, moment in enumerate(moments):
        write = 1 if k % 3 else 2  # the first checkpoint of the run, or the second (with one before it)
        out = tmp_path / f"run{k}"
        history, said = interrupted_run(monkeypatch, out, moment, write)
        where = f"moment {moment} of {total}, write {write}"
        assert history.get("interrupted"), where
        # Every epoch the run reports done is in the checkpoint on disk, and the log names it.
        checkpoint = load_checkpoint(out / "checkpoint.npz", model=build()[0])  # the tiny net has no arch name
        assert checkpoint.epoch == history["epoch"][-1] == write, where
        assert said[-1].endswith(f"the last good checkpoint is {out / 'checkpoint.npz'} (epoch {write})"), where
        assert os.path.isfile(out / "curves.png"), where
        assert not temporary_files(out), where


def test_sigint_in_the_first_checkpoint_write_of_the_train_command_claims_only_what_is_there(
        tmp_path, monkeypatch, capsys):
    images = tiny_folder(tmp_path / "photos", per_class=8)
    total = count_events(monkeypatch, tmp_path)
    for k, moment in enumerate((1, total // 2, total)):
        out = tmp_path / f"run{k}"
        real = train_module.save_checkpoint
        monkeypatch.setattr(train_module, "save_checkpoint", SignalInsideSave(real, moment, 1))
        status = main(["train", "--dataset", f"folder:{images}", "--model", "resnet20", "--batch-size", "8",
                       "--image-size", "8", "--warmup-steps", "1", "--no-progress", "--epochs", "2",
                       "--out", str(out)])
        monkeypatch.setattr(train_module, "save_checkpoint", real)
        printed = capsys.readouterr().out
        assert status == 130
        for claimed in re.findall(r"^checkpoint: (.*)$", printed, flags=re.M):
            assert load_checkpoint(claimed).epoch == 1
        assert os.path.isfile(out / "checkpoint.npz") and not temporary_files(out)


def test_signals_deferred_delivers_after_the_block_and_only_then(monkeypatch):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # a handler would have run by now
            done.append("block finished")
    assert done == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    with signals_deferred():
        pass  # nothing received: nothing raised


# -- real short runs, signalled from outside ---------------------------------------------------------------


def start(images, out, *extra):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", RESNET_NP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "resnet_np", "train", "--dataset", f"folder:{images}", "--model", "resnet20",
         "--batch-size", "8", "--image-size", "8", "--warmup-steps", "1", "--no-progress", "--out", str(out),
         *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("sig, delay", [(signal.SIGINT, 0.0), (signal.SIGINT, 0.05), (signal.SIGTERM, 0.0),
                                        (signal.SIGTERM, 0.05)])
def test_a_real_train_run_signalled_leaves_a_checkpoint_it_can_resume_and_no_temporary_file(tmp_path, sig, delay):
    images = tiny_folder(tmp_path / "photos", per_class=8)
    out = tmp_path / "run"
    process = start(images, out, "--epochs", "4")
    lines = []
    for line in process.stdout:  # the first epoch's line comes just before its checkpoint is written
        lines.append(line)
        if line.startswith("epoch 1/4"):
            time.sleep(delay)
            process.send_signal(sig)
            break
    lines += process.stdout.readlines()
    status = process.wait(timeout=120)
    printed = "".join(lines)
    assert "Traceback" not in printed, printed
    assert status in ((130, 0) if sig == signal.SIGINT else (-signal.SIGTERM, 0)), printed
    checkpoint = load_checkpoint(out / "checkpoint.npz")  # epoch 1 was reported: it is there
    assert checkpoint.epoch >= 1
    for claimed in re.findall(r"checkpoint is (\S+) \(epoch (\d+)\)", printed):
        assert load_checkpoint(claimed[0]).epoch == int(claimed[1])
    resumed = start(images, out, "--resume", str(out / "checkpoint.npz"))
    printed, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, printed
    assert load_checkpoint(out / "checkpoint.npz").epoch == 4 and not temporary_files(out)
    np.testing.assert_array_equal(load_checkpoint(out / "checkpoint.npz").history["epoch"], [1, 2, 3, 4])
