"""resnet_np.distributed in one process: a world of one, and a "mirror" world standing in for several ranks.

``MirrorWorld(k)`` answers every collective as k ranks holding the same
arrays would be answered: an all-reduce multiplies by k, an all-gather
stacks k copies. With it, the arithmetic of DistributedDataParallel and
SyncBatchNorm is checked here in milliseconds: SyncBatchNorm on x in a
world of k must equal BatchNorm2d on k copies of x, and the averaged
gradients of k equal ranks must equal one rank's. Each check is also run on
a planted bug, which it must catch. The real thing, under ``mpiexec -n 2``,
is in test_distributed_mpi.py.
"""

import numpy as np
import pytest

from resnet_np import backend, distributed, use_fast
from resnet_np.__main__ import main
from resnet_np.data import Dataset
from resnet_np.data.loader import DataLoader, DistributedSampler
from resnet_np.distributed import DistributedDataParallel, SyncBatchNorm, World, convert_sync_batchnorm
from resnet_np.layers import BatchNorm2d, Conv2d, Linear, ReLU, Sequential, SoftmaxCrossEntropy
from resnet_np.models import resnet20
from resnet_np.module import Module
from resnet_np.optim import SGD
from resnet_np.train import fit


class MirrorWorld(World):
    """k ranks that all hold the same arrays: each collective's answer, computed in one process."""

    def __init__(self, k=2):
        super().__init__()
        self.size = k

    def broadcast_(self, array, root=0):
        return array

    def allreduce(self, array):
        return array * self.size

    def allgather(self, array):
        return np.stack([array] * self.size)

    def iallreduce_(self, buffer):
        buffer *= self.size
        return distributed.world._Done()

    def sum_numbers(self, *values):
        return tuple(float(v) * self.size for v in values)

    def allgather_object(self, obj):
        return [obj] * self.size


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def max_error(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# -- the world ------------------------------------------------------------------------------

def test_without_mpiexec_the_world_is_one_process(monkeypatch):
    for name in distributed.LAUNCHER_SIZE_VARIABLES + ("RESNET_NP_MPI",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed.world, "_world", None)
    world = distributed.init()
    assert (world.rank, world.size, world.comm) == (0, 1, None) and world.is_main
    assert distributed.init() is world
    x = np.arange(6.0).reshape(2, 3)
    assert world.allreduce(x) is not x and (world.allreduce(x) == x).all()
    assert world.allgather(x).shape == (1, 2, 3) and world.sum_numbers(1, 2.5) == (1.0, 2.5)


def test_launcher_size_from_the_environment():
    assert distributed.launched_size({}) is None
    assert distributed.launched_size({"PMI_SIZE": "4"}) == 4
    assert distributed.launched_size({"OMPI_COMM_WORLD_SIZE": "8"}) == 8
    with pytest.raises(ValueError, match="PMI_SIZE='two'"):
        distributed.launched_size({"PMI_SIZE": "two"})


def test_started_by_mpiexec_without_distributed_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    assert main(["train", "--data", "/nonexistent", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "started as 2 processes" in err and "--distributed" in err and "same checkpoint" in err


def test_the_global_batch_must_divide_among_the_ranks():
    assert distributed.check_batch_size(128, MirrorWorld(2)) == 64
    with pytest.raises(ValueError, match=r"--batch-size 100 is the global batch.*multiple of the number of "
                                         r"processes, 3: try 99 or 102"):
        distributed.check_batch_size(100, MirrorWorld(3))


# -- the same model on every rank ------------------------------------------------------------

class TwoModelsWorld(MirrorWorld):
    """Rank 1 built ``other`` instead of the model rank 0 built."""

    def __init__(self, other):
        super().__init__(2)
        self.other = other

    def allgather_object(self, obj):
        return [obj, distributed.replicas._signature(self.other)]


def test_a_rank_with_another_model_is_a_clear_error():
    with pytest.raises(ValueError) as error:
        DistributedDataParallel(resnet20(in_channels=1), TwoModelsWorld(resnet20(in_channels=3)))
    text = str(error.value)
    assert "the model on rank 1 differs from rank 0's" in text
    assert "conv1.weight: shape (16, 1, 3, 3), float32, trainable True on rank 0; shape (16, 3, 3, 3)" in text
    frozen = resnet20(in_channels=1)
    frozen.fc.requires_grad_(False)
    with pytest.raises(ValueError, match="fc.weight: .*trainable True on rank 0; .*trainable False on rank 1"):
        DistributedDataParallel(resnet20(in_channels=1), TwoModelsWorld(frozen))
    DistributedDataParallel(resnet20(in_channels=1), TwoModelsWorld(resnet20(in_channels=1)))  # same: accepted


# -- SyncBatchNorm ----------------------------------------------------------------------------

class SyncBNLocalSums(SyncBatchNorm):
    """A planted bug: backward with this rank's two sums only (the all-reduce forgotten)."""

    def backward(self, dout):
        world, self.world = self.world, MirrorWorld(1)
        try:
            return super().backward(dout)
        finally:
            self.world = world


class SyncBNLocalCount(SyncBatchNorm):
    """A planted bug: the running variance made unbiased with this rank's count, not the global one."""

    def _update_running_stats(self, mean, var, M):
        super()._update_running_stats(mean, var, M // self.world.size)


def sync_bn_mismatch(layer_class, k=2, seed=0):
    """The worst difference between ``layer_class`` on x in a world of k and BatchNorm2d on k copies of x."""
    x, dout = randn(3, 4, 5, 5, seed=seed) * 2 + 1, randn(3, 4, 5, 5, seed=seed + 1)
    bn = BatchNorm2d(4).astype("float64")
    bn.weight.data[:] = randn(4, seed=seed + 2)
    sync = layer_class(4, world=MirrorWorld(k)).astype("float64")
    sync.weight.data[:] = bn.weight.data
    errors = []
    for _ in range(2):  # twice: the running statistics move on from where they are
        out_bn = bn(np.concatenate([x] * k))
        out = sync(x)
        errors.append(max_error(out, out_bn[:3]))
        bn.zero_grad()
        sync.zero_grad()
        dx_bn = bn.backward(np.concatenate([dout] * k))
        dx = sync.backward(dout)
        errors.append(max_error(dx, dx_bn[:3]))
        # BatchNorm2d sums the parameter gradients over k copies; each rank holds one copy's.
        errors.append(max_error(sync.weight.grad * k, bn.weight.grad))
        errors.append(max_error(sync.bias.grad * k, bn.bias.grad))
        errors.append(max_error(sync.running_mean, bn.running_mean))
        errors.append(max_error(sync.running_var, bn.running_var))
    assert sync.num_batches_tracked == bn.num_batches_tracked == 2
    return max(errors)


class ThreadWorld(World):
    """Rank ``rank`` of ``size`` threads in this process, meeting at a barrier for each collective."""

    def __init__(self, rank, size, slots, barrier):
        super().__init__()
        self.rank, self.size, self.slots, self.meet = rank, size, slots, barrier

    def allgather(self, array):
        self.slots[self.rank] = array.copy()
        self.meet.wait()
        gathered = np.stack(self.slots)
        self.meet.wait()  # nobody overwrites a slot before everyone has read them all
        return gathered

    def allreduce(self, array):
        return self.allgather(array).sum(axis=0)


def test_sync_batchnorm_on_ranks_with_different_images():
    """Two threads as two ranks, each with its own images (of different counts): one BatchNorm2d over all."""
    import threading
    shares = [randn(2, 3, 4, 4, seed=1) * 3 - 2, randn(3, 3, 4, 4, seed=2) + 5]
    douts = [randn(2, 3, 4, 4, seed=3), randn(3, 3, 4, 4, seed=4)]
    bn = BatchNorm2d(3).astype("float64")
    out_bn = bn(np.concatenate(shares))
    dx_bn = bn.backward(np.concatenate(douts))
    slots, barrier, results = [None, None], threading.Barrier(2, timeout=30), [None, None]

    def rank(r):
        sync = SyncBatchNorm(3, world=ThreadWorld(r, 2, slots, barrier)).astype("float64")
        out = sync(shares[r])
        results[r] = (out, sync.backward(douts[r]), sync.weight.grad, sync.running_var)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (out0, dx0, dw0, rv0), (out1, dx1, dw1, rv1) = results
    assert max_error(np.concatenate([out0, out1]), out_bn) < 1e-12
    assert max_error(np.concatenate([dx0, dx1]), dx_bn) < 1e-12
    assert max_error(dw0 + dw1, bn.weight.grad) < 1e-12  # each rank's share of the sum
    assert max_error(rv0, bn.running_var) < 1e-14 and max_error(rv1, bn.running_var) < 1e-14


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("k", [2, 3])
def test_sync_batchnorm_equals_batchnorm_over_every_ranks_images(k, fast):
    """On both of BatchNorm2d's paths: SyncBatchNorm replaces only its two sums, which both go through."""
    with use_fast(fast):
        assert sync_bn_mismatch(SyncBatchNorm, k) < 1e-12


@pytest.mark.parametrize("planted", [SyncBNLocalSums, SyncBNLocalCount])
def test_sync_batchnorm_check_catches_a_planted_bug(planted):
    assert sync_bn_mismatch(planted) > 1e-3


def test_sync_batchnorm_moments_are_combined_exactly():
    """Shares of different sizes (even an empty one): the combined moments are the whole batch's."""
    values = randn(23, 3, seed=4) * 5 + 100  # a large mean: the naive E[x^2] - E[x]^2 loses digits here
    parts = [values[:10], values[10:10], values[10:17], values[17:]]
    counts = np.array([len(p) for p in parts], dtype=np.float64)
    means = np.stack([p.mean(axis=0) if len(p) else np.zeros(3) for p in parts])
    m2s = np.stack([((p - p.mean(axis=0)) ** 2).sum(axis=0) if len(p) else np.zeros(3) for p in parts])
    M, mean, var = distributed.combine_moments(counts, means, m2s)
    assert M == 23
    np.testing.assert_allclose(mean, values.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, values.var(axis=0), rtol=1e-12)


def test_sync_batchnorm_in_eval_mode_and_alone_is_batchnorm():
    x = randn(2, 4, 3, 3).astype(np.float32)
    bn, sync = BatchNorm2d(4), SyncBatchNorm(4, world=World())
    np.testing.assert_array_equal(sync(x), bn(x))  # a world of one: train mode, locally
    sync.world = MirrorWorld(2)
    bn.eval()
    sync.eval()
    np.testing.assert_array_equal(sync(x), bn(x))
    np.testing.assert_array_equal(sync.backward(x), bn.backward(x))


def test_convert_sync_batchnorm_keeps_keys_arrays_and_parameters():
    model = resnet20(in_channels=1)
    model.layer1[0].bn1.keep_eval = True
    before = model.state_dict()
    parameters = list(model.parameters())
    world = MirrorWorld(2)
    assert convert_sync_batchnorm(model, world) is model
    batch_norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert len(batch_norms) == 19 and all(type(m) is SyncBatchNorm and m.world is world for m in batch_norms)
    after = model.state_dict()
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)
    assert all(a is b for a, b in zip(model.parameters(), parameters))  # an optimizer made before still works
    assert model.layer1[0].bn1.keep_eval
    assert type(convert_sync_batchnorm(BatchNorm2d(3), world)) is SyncBatchNorm


@pytest.mark.parametrize("options", [dict(affine=False), dict(track_running_stats=False),
                                     dict(affine=False, track_running_stats=False, momentum=None)])
def test_convert_sync_batchnorm_keeps_the_batch_norms_options(options):
    """PyTorch's options survive the conversion: the same keys, and the numbers of one batch norm that sees
    both mirrored ranks' batches at once (their union: x twice)."""
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5))
    dout = np.random.default_rng(1).standard_normal(x.shape)
    bn = BatchNorm2d(3, **options).astype("float64")
    sync = convert_sync_batchnorm(BatchNorm2d(3, **options).astype("float64"), MirrorWorld(2))
    assert (sync.affine, sync.track_running_stats, sync.momentum) == (bn.affine, bn.track_running_stats, bn.momentum)
    assert list(sync.state_dict()) == list(bn.state_dict())
    for mode in ("train", "eval"):
        getattr(bn, mode)(), getattr(sync, mode)()
        np.testing.assert_allclose(sync(x), bn(np.concatenate([x, x]))[:4], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sync.backward(dout), bn.backward(np.concatenate([dout, dout]))[:4],
                                   rtol=1e-10, atol=1e-10)


# -- DistributedDataParallel -----------------------------------------------------------------

def gradients(model, x, y):
    loss_fn = SoftmaxCrossEntropy()
    loss_fn(model(x), y)
    model.zero_grad()
    model.backward(loss_fn.backward())
    return {name: None if p.grad is None else p.grad.copy() for name, p in model.named_parameters()}


def ddp_mismatch(world, bucket_mb=0.05, freeze="layer2"):
    """The worst difference between one model's gradients and the average DDP leaves (equal ranks)."""
    backend.manual_seed(0)
    model = resnet20(in_channels=1, shortcut="B").astype("float64")
    for name, module in model.named_modules():
        if name == freeze:
            module.requires_grad_(False)
    x, y = randn(4, 1, 8, 8), np.arange(4) % 10
    expected = gradients(model, x, y)
    ddp = DistributedDataParallel(model, world, bucket_mb=bucket_mb)
    worst = 0.0
    for _ in range(3):  # the first backward, then the buckets rebuilt in arrival order
        got = gradients(ddp, x, y)
        for name, g in expected.items():
            if g is None:
                assert got[name] is None, f"{name} is frozen and must get no gradient"
            else:
                worst = max(worst, max_error(got[name], g))
    return worst, ddp


def test_ddp_averages_every_gradient_in_buckets():
    worst, ddp = ddp_mismatch(MirrorWorld(2))
    assert worst == 0.0  # (2 g) / 2 is g exactly
    sent = [name for bucket in ddp.buckets for name in bucket.names]
    trainable = [name for name, p in ddp.named_parameters() if p.requires_grad]
    assert sorted(sent) == sorted(trainable) and len(sent) == len(set(sent))  # each once, none frozen
    assert not any(name.startswith("layer2.") for name in sent)
    assert len(ddp.buckets) > 5
    for bucket in ddp.buckets:
        assert bucket.flat.size == sum(p.size for p in bucket.params) and bucket.flat.flags["C_CONTIGUOUS"]
        assert bucket.nbytes - bucket.params[-1].data.nbytes < ddp.bucket_bytes
    # After the first step the buckets follow the order backward delivered the gradients: the
    # classifier first, the first convolution last, and a block's shortcut after its conv1
    # (BasicBlock.backward runs it last), though the parameter list has it before.
    assert sent[0].startswith("fc.") and sent[-1] == "conv1.weight"
    assert sent.index("layer3.0.downsample.0.weight") > sent.index("layer3.0.conv1.weight")


def test_ddp_launches_buckets_during_backward():
    _, ddp = ddp_mismatch(MirrorWorld(2))
    launched = [bucket.launched for bucket in ddp.buckets]
    assert launched == sorted(launched)
    assert launched[0] < 0.5 * ddp.backward_seconds, "the first bucket must leave long before backward ends"


def test_ddp_check_catches_a_planted_bug(monkeypatch):
    def unpack_without_dividing(bucket, size):
        return real_unpack(bucket, 1)

    real_unpack = distributed.data_parallel._Bucket.unpack
    monkeypatch.setattr(distributed.data_parallel._Bucket, "unpack", unpack_without_dividing)
    assert ddp_mismatch(MirrorWorld(2))[0] > 1e-6


def test_ddp_broadcasts_rank_0s_weights_and_keeps_the_models_interface():
    class FromRank0(MirrorWorld):
        def broadcast_(self, array, root=0):
            array[...] = 7
            return array

    model = resnet20(in_channels=1)
    ddp = DistributedDataParallel(model, FromRank0())
    assert all((v == 7).all() for v in model.state_dict().values())
    assert list(ddp.state_dict()) == list(model.state_dict())  # no "module." prefix
    assert [p for p in ddp.parameters()] == [p for p in model.parameters()]
    assert ddp.eval() is ddp and not model.training and not ddp.training
    with pytest.raises(ValueError, match="already wrapped"):
        DistributedDataParallel(ddp, MirrorWorld(2))
    with pytest.raises(ValueError, match="bucket_mb must be a positive number"):
        DistributedDataParallel(model, MirrorWorld(2), bucket_mb=0)


def every_bucket_leaves_during_backward(ddp):
    return all(bucket.launched < ddp.backward_seconds for bucket in ddp.buckets)


def test_ddp_learns_of_every_gradient_from_its_parameters_hook():
    """Each trainable parameter's post-accumulate hook reports to the wrapper: even the last bucket
    (conv1.weight) leaves before the model's backward returns. A parameter whose hook is missing would
    hold its bucket, and every bucket after it, until backward has ended."""
    _, ddp = ddp_mismatch(MirrorWorld(2))
    assert every_bucket_leaves_during_backward(ddp)
    model = ddp.module
    assert not any("forward" in vars(m) or "backward" in vars(m) for m in model.modules())  # nothing replaced

    x, y = randn(4, 1, 8, 8), np.arange(4) % 10
    gradients(ddp, x, y)
    assert every_bucket_leaves_during_backward(ddp)
    middle = ddp.buckets[len(ddp.buckets) // 2].params[0]
    ddp._hooked[id(middle)][1].remove()  # a planted bug: one parameter's hook lost
    gradients(ddp, x, y)
    assert not every_bucket_leaves_during_backward(ddp)


def test_ddp_is_a_module_whose_names_are_the_models():
    model = resnet20(in_channels=1)
    ddp = DistributedDataParallel(model, MirrorWorld(2))
    assert isinstance(ddp, Module) and ddp.module is model and list(ddp.children()) == [model]
    assert [n for n, _ in ddp.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert [n for n, _ in ddp.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert list(ddp.state_dict()) == list(model.state_dict())  # no "module." prefix
    x = randn(2, 1, 8, 8).astype(np.float32)
    np.testing.assert_array_equal(ddp(x), model(x))
    assert ddp.output_shape == (2, 10)
    # A state dict saved from the wrapper loads into the bare model, and back.
    other = resnet20(in_channels=1)
    other.fc.weight.data[:] = 3
    ddp.load_state_dict(other.state_dict())
    assert (model.fc.weight.data == 3).all()
    resnet20(in_channels=1).load_state_dict(ddp.state_dict())
    # Modes, gradients, freezing and dtype reach every layer of the model.
    ddp.eval()
    assert not ddp.training and not any(m.training for m in model.modules())
    ddp.train()
    assert ddp.training and all(m.training for m in model.modules())
    ddp.backward(np.ones((2, 10), np.float32))
    assert model.conv1.weight.grad is not None
    ddp.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    ddp.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    assert ddp.astype("float64") is ddp and model.conv1.weight.dtype == np.float64
    assert repr(ddp).startswith("DistributedDataParallel(World(rank=0, size=2")


def test_ddp_refuses_a_module_used_twice():
    shared = Linear(4, 4)
    model = Sequential(shared, ReLU(), shared)
    ddp = DistributedDataParallel(model, MirrorWorld(2))
    ddp(randn(2, 4).astype(np.float32))
    with pytest.raises(RuntimeError, match="received its gradient twice"):
        ddp.backward(randn(2, 4).astype(np.float32))


def test_ddp_in_a_world_of_one_trains_exactly_like_the_model(tmp_path):
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (48, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 48), ["a", "b", "c"],
                   (0.5,), (0.3,))
    histories, weights = [], []
    for wrap in (False, True):
        backend.manual_seed(0)
        model = Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm2d(4), ReLU())
        net = Sequential(model, distributed_head())
        if wrap:
            net = DistributedDataParallel(convert_sync_batchnorm(net, World()), World())
        optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9)
        loader = DataLoader(data, batch_size=8, drop_last=True, augment="digits",
                            sampler=DistributedSampler(1, 0, drop_last=True) if wrap else None)
        history = fit(net, loader, DataLoader(data, batch_size=16, shuffle=False), 2, optimizer,
                      out_dir=str(tmp_path / str(wrap)), progress=False, log=lambda *a: None)
        histories.append([history[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")])
        weights.append(distributed.unwrap(net).state_dict())
    assert histories[0] == histories[1]
    for key, value in weights[0].items():
        np.testing.assert_array_equal(value, weights[1][key], err_msg=key)


def distributed_head():
    from resnet_np.layers import Flatten, GlobalAvgPool2d
    return Sequential(GlobalAvgPool2d(), Flatten(), Linear(4, 3))


# -- DistributedSampler -----------------------------------------------------------------------

def tiny_dataset(n):
    images = (np.arange(n, dtype=np.uint8) % 251)[:, None, None, None] * np.ones((1, 1, 4, 4), dtype=np.uint8)
    return Dataset(images, np.arange(n) % 2, ["even", "odd"], (0.5,), (0.5,))


@pytest.mark.parametrize("n", [20, 23])
@pytest.mark.parametrize("mode", ["drop", "pad", "uneven"])
def test_sampler_shares_are_disjoint_and_cover_the_epoch(n, mode):
    R = 3
    options = {"drop": dict(drop_last=True), "pad": dict(), "uneven": dict(pad=False)}[mode]
    loaders = [DataLoader(tiny_dataset(n), batch_size=2, seed=5, sampler=DistributedSampler(R, r, **options))
               for r in range(R)]
    whole = DataLoader(tiny_dataset(n), batch_size=2, seed=5).order(4)
    shares = [loader.order(4) for loader in loaders]
    lengths = [len(s) for s in shares]
    assert lengths == [loader.sampler.share_length(n) for loader in loaders]
    together = np.concatenate(shares)
    if mode == "drop":
        assert lengths == [n // R] * R and sorted(together) == sorted(whole[:n - n % R])
    elif mode == "pad":
        assert lengths == [-(-n // R)] * R and set(together) == set(whole)
        assert len(together) - len(set(together)) == (-n) % R  # only the padding repeats
    else:
        assert sorted(together) == sorted(whole) and max(lengths) - min(lengths) <= (1 if n % R else 0)
    if mode != "uneven":
        assert len({len(loader) for loader in loaders}) == 1, "every rank must take the same number of steps"
    assert not (set(shares[0]) & set(shares[1])) or mode == "pad"


def test_rank_batches_together_are_one_process_batch():
    """Batch b of rank 0 and of rank 1 together is batch b of one process with twice the batch."""
    data = tiny_dataset(37)
    single = list(DataLoader(data, batch_size=8, drop_last=True, seed=1, normalize=False))
    ranks = [list(DataLoader(data, batch_size=4, drop_last=True, seed=1, normalize=False,
                             sampler=DistributedSampler(2, r, drop_last=True))) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 37 // 8
    for b, (x, y) in enumerate(single):
        np.testing.assert_array_equal(x[0::2], ranks[0][b][0])
        np.testing.assert_array_equal(x[1::2], ranks[1][b][0])


def test_ranks_draw_their_own_augmentation_and_one_rank_draws_what_one_process_does():
    # Sixteen copies of one image: two ranks drawing the same crops would return the same batch.
    image = np.random.default_rng(0).integers(1, 256, (1, 1, 12, 12), dtype=np.uint8)
    data = Dataset(np.repeat(image, 16, axis=0), np.zeros(16, int), ["x"], (0.5,), (0.5,))

    def first_batch(sampler):
        return next(iter(DataLoader(data, batch_size=8, seed=3, augment="digits", sampler=sampler)))[0]

    np.testing.assert_array_equal(first_batch(DistributedSampler(1, 0)), first_batch(None))
    rank0, rank1 = first_batch(DistributedSampler(2, 0)), first_batch(DistributedSampler(2, 1))
    assert not np.array_equal(rank0, rank1), "the two ranks cropped their images with the same offsets"


def test_sampler_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match=r"rank must be an int in 0\.\.1 \(num_replicas=2\), got 2"):
        DistributedSampler(2, 2)
    with pytest.raises(ValueError, match="num_replicas must be a positive int"):
        DistributedSampler(0, 0)
    with pytest.raises(ValueError, match="sampler must be None or a DistributedSampler"):
        DataLoader(tiny_dataset(4), sampler=[0, 1])
