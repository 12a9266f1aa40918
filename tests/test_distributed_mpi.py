"""Data parallelism for real: two processes under ``mpiexec -n 2`` (skipped where mpiexec or mpi4py is missing).

This file is also the program the ranks run::

    mpiexec -n 2 python tests/test_distributed_mpi.py equivalence
    mpiexec -n 2 python tests/test_distributed_mpi.py mismatch
    mpiexec -n 2 python tests/test_distributed_mpi.py cli kill:1:1:2 train --distributed ...

Every mpiexec runs with a time limit, in its own process group, killed
whole if it overruns: a hang fails the test instead of stalling CI. The
shapes are tiny (8x8 images), and MPICH's waiting ranks sleep instead of
spinning (``distributed.MPICH_YIELD``), so the tests leave the CPU to
whoever else runs on the machine.
"""

import glob
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from resnet_np import distributed
from resnet_np.checkpoint import load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parent.parent
MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"


# ----------------------------------------------------------------------------
# What the ranks run
# ----------------------------------------------------------------------------

def relative_error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300)) if b.size else 0.0


def scenario_equivalence():
    """2 ranks x 4 images against 1 process x 8 images, ResNet-20 in float64, over several SGD steps.

    Every rank also builds the single-process reference: a plain ResNet-20
    (BatchNorm2d) fed the whole batch of 8, from rank 0's initial weights.
    The distributed model starts from other weights on rank 1, so the
    broadcast is tested too.
    """
    from resnet_np import backend
    from resnet_np.data import Dataset
    from resnet_np.data.loader import DataLoader, DistributedSampler
    from resnet_np.distributed import DistributedDataParallel, convert_sync_batchnorm, init
    from resnet_np.layers import SoftmaxCrossEntropy
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD

    world = init()
    R = world.size
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 40),
                   [str(c) for c in range(10)], (0.45,), (0.28,))
    backend.manual_seed(world.rank)
    model = convert_sync_batchnorm(resnet20(in_channels=1).astype("float64"), world)
    model = DistributedDataParallel(model, world, bucket_mb=0.25)  # 9 buckets of float64
    reference = resnet20(in_channels=1).astype("float64")
    reference.load_state_dict(model.state_dict())
    optimizers = [SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for m in (model, reference)]
    loader = DataLoader(data, batch_size=4, drop_last=True, seed=7, sampler=DistributedSampler(R, world.rank,
                                                                                              drop_last=True))
    reference_loader = DataLoader(data, batch_size=4 * R, drop_last=True, seed=7)
    loss_fns = [SoftmaxCrossEntropy(), SoftmaxCrossEntropy()]
    worst = {"forward": 0.0, "gradients": 0.0, "running statistics": 0.0, "weights": 0.0}
    steps = 0
    for (x, y), (x_all, y_all) in zip(loader, reference_loader):
        assert (y == y_all[world.rank::R]).all(), "the rank's images are not its share of the global batch"
        outputs = []
        for m, inputs, labels, loss_fn, optimizer in zip((model, reference), (x, x_all), (y, y_all), loss_fns,
                                                         optimizers):
            m.train()
            outputs.append(m(inputs.astype(np.float64)))
            loss_fn(outputs[-1], labels)
            optimizer.zero_grad()
            m.backward(loss_fn.backward())
        worst["forward"] = max(worst["forward"], relative_error(outputs[0], outputs[1][world.rank::R]))
        for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            worst["gradients"] = max(worst["gradients"], relative_error(p.grad, q.grad))
        for optimizer in optimizers:
            optimizer.step()
        ours, theirs = model.state_dict(), reference.state_dict()
        for key in ours:
            if key.endswith("num_batches_tracked"):
                assert ours[key] == theirs[key], key
            else:
                kind = "running statistics" if "running" in key else "weights"
                worst[kind] = max(worst[kind], relative_error(ours[key], theirs[key]))
        steps += 1
    everyone = world.allgather_object(worst)  # rank 0 prints for all: two ranks' lines could interleave
    if world.is_main:
        for rank, errors in enumerate(everyone):
            print(f"rank {rank}: {steps} steps, {len(model.buckets)} buckets; worst relative error: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + f"; overall {max(errors.values()):.3e}")


def scenario_mismatch():
    """Rank 1 builds a ResNet-20 for 3-channel images, rank 0 for 1-channel ones."""
    from resnet_np.distributed import DistributedDataParallel, init
    from resnet_np.models import resnet20

    world = init()
    DistributedDataParallel(resnet20(in_channels=1 if world.rank == 0 else 3), world)
    print(f"rank {world.rank}: accepted a different model", flush=True)


def scenario_cli(fault, argv):
    """``python -m resnet_np`` with a planted fault: "kill:RANK:EPOCH:STEP" (SIGKILL) or "raise:...", or "none"."""
    from resnet_np.__main__ import main
    from resnet_np.data.loader import DataLoader

    if fault != "none":
        kind, rank, epoch, step = fault.split(":")
        rank, epoch, step = int(rank), int(epoch), int(step)
        real_batches = DataLoader._batches

        def faulty_batches(loader, e):
            for b, batch in enumerate(real_batches(loader, e)):
                if loader.shuffle and loader.sampler is not None and (loader.sampler.rank, e, b) == (rank, epoch, step):
                    if kind == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise RuntimeError(f"planted failure in epoch {epoch + 1}, step {step + 1}")
                yield batch

        DataLoader._batches = faulty_batches
    sys.exit(main(argv))


# ----------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------

def _why_no_mpi():
    if not MPIEXEC.is_file():
        return f"no mpiexec beside {sys.executable}: pip install -e '.[distributed]' (mpi4py and mpich)"
    try:
        import mpi4py  # noqa: F401  (the package only: MPI itself starts in the ranks)
    except ImportError:
        return "mpi4py is not installed: pip install -e '.[distributed]'"
    return None


pytestmark = pytest.mark.skipif(_why_no_mpi() is not None, reason=str(_why_no_mpi()))


class Run:
    def __init__(self, returncode, out, err, seconds):
        self.returncode, self.out, self.err, self.seconds = returncode, out, err, seconds
        self.text = out + err

    def __repr__(self):
        return f"exit status {self.returncode} after {self.seconds:.1f} s\n{self.out[-3000:]}\n{self.err[-3000:]}"


def _shared_memory_files():
    return set(glob.glob("/dev/shm/mpich_shm_*"))


def _remove_leftover_shared_memory(before):
    """Delete the /dev/shm segments an aborted or killed job left behind (2 MB each).

    MPICH unlinks its shared-memory file in MPI_Finalize, which a job ended by
    MPI_Abort or SIGKILL never reaches. Only files that appeared during the job,
    belong to this user (mode 0600: only this user's processes can map them)
    and that no live process maps are removed: a job running beside this one
    keeps its own.
    """
    new = {path for path in _shared_memory_files() - before if os.stat(path).st_uid == os.getuid()}
    for _ in range(10):  # the killed ranks may take a moment to be gone
        mapped = set()
        for maps in glob.glob("/proc/[0-9]*/maps"):
            try:
                with open(maps) as f:
                    text = f.read()
            except OSError:
                continue  # ended meanwhile, or another user's process (which cannot map this user's files)
            mapped.update(path for path in new if path in text)
        for path in new - mapped:
            try:
                os.remove(path)
            except OSError:
                pass
        new = mapped
        if not new:
            return
        time.sleep(0.2)


def run(args, cwd, n=2, timeout=120, mpi=True):
    """``mpiexec -n n python ARGS`` (or ``python ARGS``), killed with its whole process group after ``timeout``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", RESNET_NP_NUM_THREADS="1")
    for name, value in distributed.MPICH_YIELD.items():
        env.setdefault(name, value)
    command = ([str(MPIEXEC), "-n", str(n)] if mpi else []) + [sys.executable, *map(str, args)]
    shared_memory = _shared_memory_files()
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=str(cwd), start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{' '.join(command)} did not end within {timeout} s (a hang):\n{out[-3000:]}\n{err[-3000:]}")
    seconds = time.monotonic() - start
    if process.returncode != 0:
        _remove_leftover_shared_memory(shared_memory)
    return Run(process.returncode, out, err, seconds)


def test_two_ranks_of_4_images_equal_one_process_of_8_in_float64(tmp_path):
    result = run([__file__, "equivalence"], tmp_path)
    assert result.returncode == 0, result
    errors = [float(e) for e in re.findall(r"overall (\S+)", result.out)]
    assert len(errors) == 2, result
    print(result.out)
    assert max(errors) <= 1e-10, result
    assert all(int(n) >= 5 for n in re.findall(r"(\d+) buckets", result.out)), result  # several buckets in flight


def test_another_model_on_one_rank_ends_the_job_with_a_clear_error(tmp_path):
    result = run([__file__, "mismatch"], tmp_path, timeout=60)
    assert result.returncode != 0 and "accepted a different model" not in result.out, result
    assert "the model on rank 1 differs from rank 0's" in result.err and "conv1.weight" in result.err, result
    assert re.search(r"rank [01] of 2: ValueError", result.err), result


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes of 8x8 pictures (a bright left or top half), 60 each: a data set in a second."""
    from PIL import Image
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"class{c}").mkdir()
        for i in range(60):
            pixels = rng.integers(0, 80, (8, 8, 3), dtype=np.uint8)
            pixels[:4 if c else 8, :8 if c else 4] += 150
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def train_args(folder, out, epochs=3):
    return ["train", "--dataset", f"folder:{folder}", "--image-size", "8", "--batch-size", "16", "--epochs",
            str(epochs), "--warmup-steps", "2", "--lr", "0.02", "--augment", "none", "--no-progress", "--out",
            str(out)]


def test_mpiexec_without_distributed_is_refused(tmp_path, image_folder):
    result = run(["-m", "resnet_np", *train_args(image_folder, tmp_path / "run")], tmp_path, timeout=60)
    assert result.returncode != 0, result
    assert result.err.count("started as 2 processes (mpiexec -n 2) without --distributed") == 2, result
    assert not (tmp_path / "run").exists()


def test_a_rank_that_raises_ends_the_job_and_says_which(tmp_path, image_folder):
    args = [__file__, "cli", "raise:1:0:1", *train_args(image_folder, tmp_path / "run"), "--distributed"]
    result = run(args, tmp_path, timeout=90)
    assert result.returncode != 0, result
    assert "rank 1 of 2: RuntimeError: planted failure in epoch 1, step 2" in result.err, result
    assert result.seconds < 60, result


def test_a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes_under_any_number_of_ranks(tmp_path,
                                                                                               image_folder):
    out = tmp_path / "run"
    result = run([__file__, "cli", "kill:1:1:2", *train_args(image_folder, out), "--distributed"], tmp_path,
                 timeout=90)
    assert result.returncode != 0, result
    assert result.seconds < 60, result
    # mpiexec reports the PID of the process that died; rank 0 listed which rank has which PID.
    pids = dict(re.findall(r"rank (\d): pid (\d+) on", result.out))
    assert set(pids) == {"0", "1"}, result
    assert re.search(rf"PID {pids['1']} .*\n.*EXIT CODE: 9", result.text), result
    assert "epoch 1/3: train loss" in result.out and "epoch 2/3" not in result.out, result

    saved = load_checkpoint(out / "checkpoint.npz")  # intact: the kill came after epoch 1's atomic write
    assert saved.epoch == 1 and saved.history["epoch"] == [1]

    # Resume the killed job: under mpiexec -n 2, and from a copy of its checkpoint in one process.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "checkpoint.npz").write_bytes((out / "checkpoint.npz").read_bytes())
    resumed = run(["-m", "resnet_np", "train", "--distributed", "--resume", "--no-progress", "--out", out], tmp_path)
    assert resumed.returncode == 0 and "resumed from" in resumed.out, resumed
    assert resumed.out.count("epoch 3/3: train loss") == 1, resumed  # rank 0 alone logs
    single = run(["-m", "resnet_np", "train", "--resume", alone / "checkpoint.npz", "--no-progress"], tmp_path,
                 mpi=False)
    assert single.returncode == 0, single
    a, b = load_checkpoint(out / "checkpoint.npz"), load_checkpoint(alone / "checkpoint.npz")
    assert a.epoch == b.epoch == 3 and a.history["epoch"] == [1, 2, 3]
    # The same global batches, synchronised batch norms: the two continuations agree up to float32 rounding.
    np.testing.assert_allclose(a.history["train_loss"], b.history["train_loss"], rtol=1e-4)
    for key, value in a.model.state_dict().items():
        np.testing.assert_allclose(value, b.model.state_dict()[key], rtol=1e-3, atol=1e-4, err_msg=key)


def test_the_benchmark_runs_quick(tmp_path):
    """benchmarks/bench_distributed.py on 8 images: every setting lands in the table, the model on paper too."""
    out = tmp_path / "distributed.md"
    result = run([ROOT / "benchmarks" / "bench_distributed.py", "--quick", "--steps", "1", "--batch", "8",
                  "--repeat", "2", "--out", out], tmp_path, mpi=False, timeout=300)
    assert result.returncode == 0, result
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| 1 process", "| 2 ranks"))]
    assert len(rows) == 5 and all(line.count("|") == 8 for line in rows), rows
    assert sum("%" in line for line in rows) == 3  # the share of the step blocked in MPI, for the ranks
    assert text.count("| ResNet-50, A100") == 6 and "InfiniBand" in text


def test_lesson_13_runs_alone_and_under_mpiexec(tmp_path):
    lesson = ROOT / "lessons" / "13_data_parallel.py"
    for mpi in (False, True):
        out = tmp_path / ("mpi" if mpi else "alone")
        result = run([lesson, "--quick", "--out", out], tmp_path, mpi=mpi, timeout=300)
        assert result.returncode == 0, result
        assert list(out.glob("*.png")), "the lesson saved no figure"
        assert f"{2 if mpi else 1} process" in result.out, result


if __name__ == "__main__":
    if sys.argv[1] == "equivalence":
        scenario_equivalence()
    elif sys.argv[1] == "mismatch":
        scenario_mismatch()
    elif sys.argv[1] == "cli":
        scenario_cli(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(f"unknown scenario {sys.argv[1]!r}")
    sys.exit(0)
