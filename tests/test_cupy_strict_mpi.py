"""Data parallelism with device arrays: two ranks under ``mpiexec -n 2`` on the strict CuPy stand-in.

Each rank puts its model on the "GPU" (``resnet_np.cupy_strict``, CuPy's rules
emulated on NumPy: no GPU here), so the gradient all-reduce, the broadcast of
the weights and SyncBatchNorm's statistics all take the path of device
arrays (staged through host buffers for MPI). Two ranks of 4 images must
equal one NumPy process of 8 in float64, and ``fit`` with validation must run
through to the end. Skipped where mpiexec or mpi4py is missing.

This file is also the program the ranks run::

    mpiexec -n 2 python tests/test_cupy_strict_mpi.py ddp
"""

import pathlib
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_distributed_mpi import _why_no_mpi, run  # noqa: E402  (the same mpiexec runner, time limit, cleanup)


def scenario_ddp():
    """ResNet-20 in float64: DistributedDataParallel + SyncBatchNorm on device arrays vs one NumPy process."""
    from resnet_np import backend, cupy_strict
    from resnet_np.data import Dataset
    from resnet_np.data.loader import DataLoader, DistributedSampler
    from resnet_np.distributed import DistributedDataParallel, convert_sync_batchnorm, init, use_local_gpu
    from resnet_np.layers import SoftmaxCrossEntropy
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD
    from resnet_np.train import fit

    world = init()
    R = world.size
    backend.use("cupy-strict")
    use_local_gpu(world)
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (24, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 24),
                   [str(c) for c in range(10)], (0.45,), (0.28,))
    backend.manual_seed(world.rank)  # rank 1 starts from other weights: the broadcast must fix them
    model = DistributedDataParallel(convert_sync_batchnorm(resnet20(in_channels=1).astype("float64"), world),
                                    world, bucket_mb=0.25)
    backend.use("numpy")
    reference = resnet20(in_channels=1).astype("float64")
    reference.load_state_dict({k: backend.to_numpy(v) for k, v in model.state_dict().items()})
    optimizers = [SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for m in (model, reference)]
    loader = DataLoader(data, batch_size=4, drop_last=True, seed=7, backend="cupy",
                        sampler=DistributedSampler(R, world.rank, drop_last=True))
    reference_loader = DataLoader(data, batch_size=4 * R, drop_last=True, seed=7, backend="numpy")
    loss_fns = [SoftmaxCrossEntropy(), SoftmaxCrossEntropy()]
    worst, steps = 0.0, 0

    def err(a, b):
        a = backend.to_numpy(a)
        return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))

    for (x, y), (x_all, y_all) in zip(loader, reference_loader):
        assert isinstance(x, cupy_strict.ndarray) and isinstance(y, cupy_strict.ndarray)
        outputs = []
        for m, inputs, labels, loss_fn, optimizer in zip((model, reference), (x, x_all), (y, y_all), loss_fns,
                                                         optimizers):
            m.train()
            outputs.append(m(inputs.astype("float64")))
            loss_fn(outputs[-1], labels)
            optimizer.zero_grad()
            m.backward(loss_fn.backward())
        worst = max(worst, err(outputs[0], outputs[1][world.rank::R]))
        for (_, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            assert isinstance(p.grad, cupy_strict.ndarray)
            worst = max(worst, err(p.grad, q.grad))
        for optimizer in optimizers:
            optimizer.step()
        theirs = reference.state_dict()
        for key, value in model.state_dict().items():
            if not key.endswith("num_batches_tracked"):
                worst = max(worst, err(value, theirs[key]))
        steps += 1

    # fit in float32, with a validation share per rank: the epoch's sums are all-reduced from the device.
    backend.use("cupy-strict")
    model = DistributedDataParallel(convert_sync_batchnorm(resnet20(in_channels=1), world), world)
    val = DataLoader(data, batch_size=4, shuffle=False, backend="cupy",
                     sampler=DistributedSampler(R, world.rank, pad=False))
    history = fit(model, loader, val, 1, SGD(model.parameters(), lr=0.1, momentum=0.9), progress=False,
                  log=lambda *a: None, world=world)
    on_device = all(isinstance(v, cupy_strict.ndarray) for v in model.state_dict().values())
    everyone = world.allgather_object((worst, steps, history["val_acc"][-1], on_device))
    if world.is_main:
        for rank, (w, n, acc, device) in enumerate(everyone):
            print(f"rank {rank}: {n} steps, on device {device}, val acc {acc:.4f}, worst relative error {w:.3e}")


@pytest.mark.skipif(_why_no_mpi() is not None, reason=str(_why_no_mpi()))
def test_two_ranks_on_device_arrays_equal_one_numpy_process(tmp_path):
    result = run([__file__, "ddp"], tmp_path, timeout=240)
    assert result.returncode == 0, result
    lines = re.findall(r"rank (\d): (\d+) steps, on device (\w+), val acc (\S+), worst relative error (\S+)",
                       result.out)
    assert len(lines) == 2, result
    assert all(int(n) == 3 and device == "True" for _, n, device, _, _ in lines), result
    assert len({acc for _, _, _, acc, _ in lines}) == 1, result  # the validation sums were all-reduced
    assert max(float(e) for *_, e in lines) <= 1e-10, result


if __name__ == "__main__":
    if sys.argv[1] == "ddp":
        scenario_ddp()
    else:
        raise SystemExit(f"unknown scenario {sys.argv[1]!r}")
    sys.exit(0)
