# %% [markdown]
# # Lesson 13 — data parallelism by hand: shards, averaged gradients, SyncBatchNorm, buckets
#
# One process trains at the speed of one processor. *Data parallelism* runs
# $R$ copies of the program — $R$ *ranks* — each holding the whole network.
# Every batch of $B$ images is cut into $R$ shards of $B/R$; each rank runs
# forward and backward on its own shard, the ranks **average their
# gradients**, and every rank takes the same optimizer step, so the copies
# stay identical. The training step gains one line:
#
#     loss = loss_fn(model(x_shard), y_shard)
#     optimizer.zero_grad()
#     model.backward(loss_fn.backward())
#     average the gradients over the ranks      # the new line: an all-reduce
#     optimizer.step()
#
# Three questions make the lesson:
#
# 1. Why is the average of the shards' gradients the gradient of the batch?
# 2. Why does batch normalisation break that, and how does a synchronised
#    batch norm, forward *and* backward, restore it?
# 3. How does the averaging hide behind the computation (buckets, overlap)?
#
# The ranks are processes started by MPI (``mpiexec``); ``resnet_np.distributed``
# wraps what they need. The lesson runs both ways:
#
#     python lessons/13_data_parallel.py --quick               # one process
#     mpiexec -n 2 python lessons/13_data_parallel.py --quick  # two ranks
#
# Alone, parts 1 and 2 play the ranks one after the other in one process,
# and the library is tried on a world of one. Under ``mpiexec`` the library
# runs on real ranks as well (``pip install -e '.[distributed]'`` gives
# mpi4py and MPICH's ``mpiexec``).

# %%
import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import get_array_module, to_device, to_numpy  # noqa: E402
from resnet_np.distributed import DistributedDataParallel, convert_sync_batchnorm, init  # noqa: E402
from resnet_np.layers import (  # noqa: E402
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)
from resnet_np.models import resnet20  # noqa: E402
from resnet_np.optim import SGD  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="smaller images and fewer steps, for the test suite")
parser.add_argument("--out", default="out/lessons/13_data_parallel", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own

world = init()
say = print if world.is_main else (lambda *a, **k: None)  # rank 0 speaks for everyone
out_dir = pathlib.Path(args.out)
if world.is_main:
    out_dir.mkdir(parents=True, exist_ok=True)
say(f"running as {world.size} process(es) ({'mpiexec' if world.comm is not None else 'no mpiexec: a world of one'})")

rng = np.random.default_rng(0)
R = 2                        # shards played by hand in parts 1 and 2, whatever the world's size
side = 8 if args.quick else 12
# float64: differences are rounding, not noise; on the backend's device (NumPy, or CuPy), where the layers are.
x_batch = to_device(rng.standard_normal((8, 3, side, side)) * 2 + 1)
y_batch = to_device(rng.integers(0, 5, 8))


def small_net(with_bn):
    """conv 3x3 -> (batch norm) -> relu -> global average pool -> linear: 5 classes.

    No bias in the convolution, as in a ResNet: a batch norm would subtract it again (its gradient is 0).
    """
    backend.manual_seed(0)
    layers = [Conv2d(3, 6, 3, padding=1, bias=False)] + ([BatchNorm2d(6)] if with_bn else []) + \
        [ReLU(), GlobalAvgPool2d(), Flatten(), Linear(6, 5)]
    return Sequential(*layers).astype("float64")


def gradients(net, x, y):
    """{name: dL/dparameter} of the mean cross-entropy of (x, y)."""
    loss_fn = SoftmaxCrossEntropy()
    net.train()
    loss_fn(net(x), y)
    net.zero_grad()
    net.backward(loss_fn.backward())
    return {name: p.grad.copy() for name, p in net.named_parameters()}


def worst_relative_error(grads, reference):
    return max(float(np.abs(grads[k] - reference[k]).max() / np.abs(reference[k]).max()) for k in reference)


# %% [markdown]
# ## 1. Averaged shard gradients are the batch gradient
#
# The loss of a batch is the *mean* of its examples' losses. Cut the batch
# into $R$ shards $S_r$ of $B/R$ examples each, and let $L_r$ be the mean
# loss of shard $r$:
#
# $$
# L = \frac{1}{B}\sum_{i=1}^{B} \ell_i
#   = \frac{1}{R}\sum_{r=1}^{R} \underbrace{\frac{R}{B}\sum_{i \in S_r} \ell_i}_{L_r}
# \qquad\Longrightarrow\qquad
# \nabla_\theta L = \frac{1}{R}\sum_{r=1}^{R} \nabla_\theta L_r
# $$
#
# because the gradient is linear — *provided that $\ell_i$ depends on example
# $i$ only*. Each rank computes $\nabla L_r$ on its shard; an **all-reduce**
# (every rank sends its array, every rank receives the element-wise sum)
# followed by a division by $R$ gives every rank $\nabla L$. (With unequal
# shards the average would have to be weighted by the shard sizes; the
# sampler gives every rank the same number of examples.)
#
# Here by hand, without batch norm: the two shards are the even and the odd
# images (``DistributedSampler`` deals them out like cards).

# %%
net = small_net(with_bn=False)
full = gradients(net, x_batch, y_batch)
shards = [gradients(net, x_batch[r::R], y_batch[r::R]) for r in range(R)]
averaged = {k: sum(s[k] for s in shards) / R for k in full}
error_plain = worst_relative_error(averaged, full)
say(f"no batch norm: averaged shard gradients vs the batch gradient: worst relative error {error_plain:.1e}")
assert error_plain < 1e-12

# %% [markdown]
# ## 2. Batch normalisation breaks it
#
# In train mode a batch norm normalises each channel with the mean $\mu$ and
# variance $\sigma^2$ *of the batch*: every output depends on every image
# of the batch, and $\ell_i$ no longer depends on example $i$ alone. A rank
# that normalises its shard with the shard's own statistics computes a
# different function — the forward pass already differs, and so do the
# gradients. With few images per rank (4 here, often 1 or 2 per GPU when
# training detection models) the shard statistics are noisy, and the
# network trains worse.

# %%
net_bn = small_net(with_bn=True)
full_bn = gradients(net_bn, x_batch, y_batch)
shards_bn = [gradients(net_bn, x_batch[r::R], y_batch[r::R]) for r in range(R)]
error_bn = worst_relative_error({k: sum(s[k] for s in shards_bn) / R for k in full_bn}, full_bn)
say(f"with batch norm, each shard normalised alone: worst relative error {error_bn:.1e}")
assert error_bn > 1e-3

conv_out = net_bn[0](x_batch)
channel_means = [conv_out[r::R].mean(axis=(0, 2, 3)) for r in range(R)] + [conv_out.mean(axis=(0, 2, 3))]

# %% [markdown]
# ## 3. SyncBatchNorm: the batch statistics over every rank, forward and backward
#
# **Forward.** Each rank $r$ has $M_r = N_r H W$ values per channel. It
# computes its count, mean and sum of squared deviations
# $(M_r,\ \mu_r,\ M2_r = \sum (x - \mu_r)^2)$; one all-gather gives every
# rank all of them, and Chan's formula combines them without ever
# subtracting two large numbers:
#
# $$
# M = \sum_r M_r, \qquad \mu = \frac{1}{M}\sum_r M_r \mu_r, \qquad
# \sigma^2 = \frac{1}{M}\sum_r \left[ M2_r + M_r (\mu_r - \mu)^2 \right]
# $$
#
# Every rank then normalises its own images with the *global* $\mu$ and
# $\sigma$ — exactly what one process would do with the whole batch — and
# updates the running statistics with them (the unbiased variance uses the
# global $M$).
#
# **Backward.** Write $g_i = \partial L / \partial \text{out}_i$ and
# $\hat{x}_i = (x_i - \mu)/\sigma$, $\text{out}_i = \gamma \hat{x}_i + \beta$.
# Since $\partial \mu / \partial x_i = 1/M$ and
# $\partial \sigma^2 / \partial x_i = 2 (x_i - \mu)/M$,
#
# $$
# \frac{\partial L}{\partial x_i} = \frac{\gamma}{\sigma}\Big( g_i
#   - \frac{1}{M}\sum_{j} g_j - \hat{x}_i \,\frac{1}{M}\sum_{j} g_j \hat{x}_j \Big)
# $$
#
# where $j$ runs over **all** $M$ values of the channel, on every rank:
# rank $r$ has only its own $g_j$. So the only thing the ranks must share is
# two numbers per channel — $\sum_j g_j$ and $\sum_j g_j \hat{x}_j$ — one
# all-reduce of $2C$ numbers. The parameter gradients stay local,
# $\partial L/\partial\gamma = \sum_{\text{local}} g_j \hat{x}_j$ and
# $\partial L/\partial\beta = \sum_{\text{local}} g_j$: the gradient
# averaging of part 1 adds them up with everything else.
#
# (With the sum of the ranks' losses as $L$, the $g_j$ of every rank are what
# each rank's own loss gives; averaging the parameter gradients over the
# ranks then divides by $R$: the gradient of the mean loss.)
#
# By hand, for the two shards of part 1, the "all-reduce" being a sum over a
# Python list:

# %%
def sync_bn_forward_by_hand(shards, eps=1e-5):
    """Each shard normalised with the statistics of all shards together (gamma = 1, beta = 0)."""
    xp = get_array_module(*shards)  # numpy or cupy: the arrays' own module
    counts = xp.asarray([s.shape[0] * s.shape[2] * s.shape[3] for s in shards], dtype=xp.float64)
    means = xp.stack([s.mean(axis=(0, 2, 3)) for s in shards])
    m2s = xp.stack([((s - m.reshape(1, -1, 1, 1)) ** 2).sum(axis=(0, 2, 3)) for s, m in zip(shards, means)])
    M = counts.sum()
    mean = (counts[:, None] * means).sum(axis=0) / M
    var = (m2s + counts[:, None] * (means - mean) ** 2).sum(axis=0) / M
    inv_std = 1 / xp.sqrt(var + eps)
    x_hats = [(s - mean.reshape(1, -1, 1, 1)) * inv_std.reshape(1, -1, 1, 1) for s in shards]
    return x_hats, inv_std, M


def sync_bn_backward_by_hand(gs, x_hats, inv_std, M):
    """dL/dx of every shard: the two per-channel sums are summed over the shards (the all-reduce)."""
    sum_g = sum(g.sum(axis=(0, 2, 3)) for g in gs)
    sum_g_xhat = sum((g * xh).sum(axis=(0, 2, 3)) for g, xh in zip(gs, x_hats))
    return [inv_std.reshape(1, -1, 1, 1) * (g - (sum_g / M).reshape(1, -1, 1, 1)
                                            - xh * (sum_g_xhat / M).reshape(1, -1, 1, 1))
            for g, xh in zip(gs, x_hats)]


activations = to_device(rng.standard_normal((8, 6, side, side)) * 3 + 2)
upstream = to_device(rng.standard_normal(activations.shape))
reference_bn = BatchNorm2d(6).astype("float64")
out_reference = reference_bn(activations)
dx_reference = reference_bn.backward(upstream)
x_hats, inv_std, M = sync_bn_forward_by_hand([activations[r::R] for r in range(R)])
dxs = sync_bn_backward_by_hand([upstream[r::R] for r in range(R)], x_hats, inv_std, M)
error_forward = max(float(np.abs(x_hats[r] - out_reference[r::R]).max()) for r in range(R))
error_backward = max(float(np.abs(dxs[r] - dx_reference[r::R]).max()) for r in range(R))
say(f"SyncBatchNorm by hand against BatchNorm2d on the whole batch: forward {error_forward:.1e}, "
    f"backward {error_backward:.1e}")
assert error_forward < 1e-12 and error_backward < 1e-12

# %% [markdown]
# Now the library on the real ranks: ``convert_sync_batchnorm`` swaps every
# ``BatchNorm2d`` for a ``SyncBatchNorm`` (same parameters, same state-dict
# keys), and ``DistributedDataParallel`` averages the gradients. Each rank
# feeds its shard; the gradients it ends with must be those of the whole
# batch, which every rank also computes alone to compare. Alone, the world
# has one rank and the shard is the whole batch.

# %%
mine = slice(world.rank, None, world.size)
ddp = DistributedDataParallel(convert_sync_batchnorm(small_net(with_bn=True), world), world)
library_grads = gradients(ddp, x_batch[mine], y_batch[mine])
error_library = worst_relative_error(library_grads, full_bn)
say(f"DistributedDataParallel + SyncBatchNorm on {world.size} rank(s), {len(y_batch[mine])} images each: "
    f"worst relative error against the whole batch {error_library:.1e}")
assert error_library < 1e-10

fig, (ax_err, ax_mean) = plt.subplots(1, 2, figsize=(11, 4))
labels = ["no batch norm:\naveraged shards", "batch norm:\nshards alone", "SyncBatchNorm\nby hand",
          f"library,\n{world.size} rank(s)"]
values = [error_plain, error_bn, max(error_forward, error_backward), error_library]
ax_err.bar(labels, [max(v, 1e-17) for v in values], color=["C0", "C3", "C2", "C2"])
ax_err.set_yscale("log")
ax_err.set(ylabel="worst relative error vs the whole batch", title="gradients from 2 shards of 4 images (float64)")
width = 0.27
for k, (means, name) in enumerate(zip(channel_means, ["shard 0 (even images)", "shard 1 (odd images)",
                                                       "whole batch"])):
    ax_mean.bar(np.arange(6) + (k - 1) * width, to_numpy(means), width, label=name)  # matplotlib reads the host
ax_mean.set(xlabel="channel after the convolution", ylabel="batch mean",
            title="what a batch norm subtracts: each shard has its own mean")
ax_mean.legend(fontsize=8)
fig.tight_layout()
if world.is_main:
    fig.savefig(out_dir / "shards_and_batchnorm.png", dpi=100)
    say(f"figure: {out_dir / 'shards_and_batchnorm.png'}")
plt.close(fig)

# %% [markdown]
# ## 4. Buckets, and hiding the all-reduce behind backward
#
# An all-reduce of $n$ bytes over $R$ ranks costs about
# $\alpha \log R + 2\frac{R-1}{R}\frac{n}{\beta}$ with a ring or tree
# algorithm: a latency $\alpha$ per message (microseconds) and a bandwidth
# $\beta$. ResNet-20 has 65 parameter tensors, most of them tiny (a batch
# norm's 16 numbers): one all-reduce each would pay the latency 65 times.
# One all-reduce of everything pays it once — but can only start when the
# last gradient exists, at the very end of backward, and then the whole
# transfer adds to the step.
#
# ``DistributedDataParallel`` does what PyTorch's does: *buckets* of about
# a megabyte, each flattened into one contiguous buffer, filled in the order
# backward produces the gradients — the classifier first, the first
# convolution last. When the last gradient of a bucket arrives, the bucket
# leaves with a *non-blocking* all-reduce (``MPI_Iallreduce``) while
# backward carries on with the layers below; at the end only the last
# bucket's transfer is left to wait for. The order is taken from the first
# backward pass (a block computes its shortcut's gradient after its
# convolutions, though the parameter list has it in between).
#
# A detail that matters: MPI libraries such as MPICH move a non-blocking
# collective forward only while the program is inside an MPI call. So each
# time a gradient is complete (a hook on its parameter says so:
# ``register_post_accumulate_grad_hook``), DDP calls ``MPI_Test`` on the
# buckets in flight: that is what lets the transfer run during backward.
#
# Below: a ResNet-20 wrapped in DDP, with small buckets (a quarter of a
# megabyte, to see several), a few steps, and the timeline of the last one.

# %%
batch_per_rank, size_rn = (8, 14) if args.quick else (32, 28)
backend.manual_seed(0)
model = DistributedDataParallel(convert_sync_batchnorm(resnet20(in_channels=1), world), world, bucket_mb=0.25)
optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = SoftmaxCrossEntropy()
images = to_device(np.random.default_rng(world.rank).standard_normal((batch_per_rank, 1, size_rn, size_rn))
                   .astype(np.float32))
labels = to_device(np.arange(batch_per_rank) % 10)
for step in range(3 if args.quick else 6):
    loss = loss_fn(model(images), labels)
    optimizer.zero_grad()
    model.backward(loss_fn.backward())
    optimizer.step()

say(f"ResNet-20 ({sum(p.size for p in model.parameters()):,} parameters, "
    f"{sum(b.nbytes for b in model.buckets) / 2**20:.2f} MB of float32 gradients) in {len(model.buckets)} buckets:")
for i, bucket in enumerate(model.buckets):
    say(f"  bucket {i}: {bucket.nbytes / 1024:6.0f} kB, {len(bucket.params):2d} tensors, {bucket.names[0]} ... "
        f"{bucket.names[-1]}; sent {1e3 * bucket.launched:6.1f} ms into backward")
say(f"last step: backward {1e3 * model.backward_seconds:.1f} ms, then {1e3 * model.wait_seconds:.1f} ms waiting for "
    "communication that was not hidden")
launched = [b.launched for b in model.buckets]
assert launched == sorted(launched)  # the buckets leave in order, the first long before the end
assert len(model.buckets) >= 3 and launched[0] < launched[-1]

fig, ax = plt.subplots(figsize=(10, 3.5))
for i, bucket in enumerate(model.buckets):
    ax.barh(i, max(bucket.done - bucket.launched, 1e-5) * 1e3, left=bucket.launched * 1e3, color="C1")
    ax.plot(bucket.launched * 1e3, i, "k|", markersize=12)
ax.axvline(model.backward_seconds * 1e3, color="C3", linestyle="--", label="backward ends")
ax.set(xlabel="milliseconds since backward began", ylabel="bucket",
       title=f"when each bucket is sent (|) and its all-reduce seen done (bar), {world.size} rank(s)")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
if world.is_main:
    fig.savefig(out_dir / "buckets_timeline.png", dpi=100)
    say(f"figure: {out_dir / 'buckets_timeline.png'}")
plt.close(fig)

# %% [markdown]
# ## What to remember
#
# * Data parallelism: every rank the whole model, a shard of each batch;
#   averaging the shards' gradients gives the batch's gradient because the
#   loss is a mean over independent examples.
# * Batch norm couples the examples of a batch. SyncBatchNorm computes the
#   statistics over all ranks (an all-gather of count, mean and M2 forward)
#   and shares two per-channel sums in backward; with it, $R$ ranks of $B/R$
#   images compute exactly what one process computes on $B$.
# * Buckets trade the per-message latency against overlap; sent in the
#   order backward fills them, with non-blocking all-reduces, most of the
#   communication hides behind the rest of backward.
# * ``mpiexec -n 2 python -m resnet_np train --distributed`` does all of this
#   for training: ``--batch-size`` stays the global batch, rank 0 logs and
#   writes the checkpoint, and a rank that fails ends the whole job.
