# %% [markdown]
# # Lesson 4 — batch normalisation: train vs eval, running statistics, backward
#
# Deep networks train badly when the scale of the signals drifts from layer
# to layer. Batch normalisation (Ioffe & Szegedy, 2015) re-centres and
# re-scales every channel, over the batch, after each convolution:
#
# $$
# \hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad \text{out} = \gamma\, \hat{x} + \beta
# $$
#
# where the mean $\mu$ (``mean``) and the variance $\sigma^2$ (``var``) are taken per channel
# over the $M = N H W$ values the channel has in the batch. $\gamma$ and $\beta$
# (``weight`` and ``bias``) are learned, so the layer can undo the normalisation if that
# helps. Every convolution in a ResNet is followed by one.
#
# Two subtleties make it the trickiest layer of the network:
#
# * **train vs eval.** In training the statistics come from the batch; at
#   test time an image must not depend on the others in its batch, so the
#   layer uses *running* averages of the statistics collected in training.
# * **the backward pass.** ``mean`` and ``var`` depend on every input of the
#   channel, which adds two terms to the gradient — easy to forget, and (as
#   we will see) invisible to a careless check.
#
# Run: ``python lessons/04_batchnorm.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np.backend import to_device, to_numpy  # noqa: E402
from resnet_np.gradcheck import check_module, numerical_gradient, rel_error  # noqa: E402
from resnet_np.layers import BatchNorm2d  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="fewer batches, for the test suite")
parser.add_argument("--out", default="out/lessons/04_batchnorm", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# Three channels with very different scales, as after a convolution.
true_mean = np.array([3.0, -1.0, 0.5])
true_std = np.array([2.0, 0.5, 1.0])


def batch(n=16, size=4):
    """n images of shape (3, size, size); channel c ~ N(true_mean[c], true_std[c]^2), where the layers are.

    The layers live on the backend (NumPy, or CuPy with RESNET_NP_BACKEND=cupy): ``to_device`` puts the
    batch there, and ``to_numpy`` brings results back to the host for NumPy's checks and for plotting.
    """
    x = rng.standard_normal((n, 3, size, size)) * true_std.reshape(1, 3, 1, 1) + true_mean.reshape(1, 3, 1, 1)
    return to_device(x.astype(np.float32))


# %% [markdown]
# ## 1. Train mode: every channel comes out with mean 0 and variance 1
#
# ...before the learned scale and shift. With ``weight = 1`` and ``bias = 0``
# (the initial values), each channel of the output has mean 0 and (biased)
# variance 1 over the batch, whatever the input's scale was. Setting
# ``weight`` and ``bias`` moves the channel to mean ``bias``, std ``weight``.

# %%
bn = BatchNorm2d(3)
x = batch()
y = bn(x)
for c in range(3):
    print(f"channel {c}: input mean {x[:, c].mean():6.2f} std {x[:, c].std():5.2f}  ->  "
          f"output mean {y[:, c].mean():8.1e} std {y[:, c].std():.5f}")
assert np.allclose(to_numpy(y.mean(axis=(0, 2, 3))), 0, atol=1e-5)
assert np.allclose(to_numpy(y.var(axis=(0, 2, 3))), 1, atol=1e-3)   # var / (var + eps), eps = 1e-5

bn.weight.data[...] = to_device([2.0, 0.5, 1.0])
bn.bias.data[...] = to_device([1.0, 0.0, -3.0])
y_affine = bn(x)
print(f"with weight {bn.weight.data} and bias {bn.bias.data}: output means {y_affine.mean(axis=(0, 2, 3)).round(4)}, "
      f"stds {y_affine.std(axis=(0, 2, 3)).round(4)}")
assert np.allclose(to_numpy(y_affine.mean(axis=(0, 2, 3))), to_numpy(bn.bias.data), atol=1e-5)
assert np.allclose(to_numpy(y_affine.std(axis=(0, 2, 3))), to_numpy(bn.weight.data), atol=1e-3)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for c, color in zip(range(3), ("C0", "C1", "C2")):
    axes[0].hist(to_numpy(x[:, c]).ravel(), bins=30, alpha=0.6, color=color, label=f"channel {c}")
    axes[1].hist(to_numpy(y[:, c]).ravel(), bins=30, alpha=0.6, color=color, label=f"channel {c}")
axes[0].set(title="input: each channel on its own scale", xlabel="value", ylabel="count")
axes[1].set(title="after BatchNorm2d (train mode, weight 1, bias 0)", xlabel="value", ylabel="count")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out_dir / "batchnorm_normalises.png", dpi=100)
print(f"figure: {out_dir / 'batchnorm_normalises.png'}")

# %% [markdown]
# ## 2. Running statistics
#
# Each training step also updates, per channel, an exponential moving average
# of the batch statistics (PyTorch's rule; ``momentum = 0.1``):
#
# $$
# \begin{aligned}
# \text{running\_mean} &\leftarrow 0.9\; \text{running\_mean} + 0.1\; \mu \\
# \text{running\_var} &\leftarrow 0.9\; \text{running\_var} + 0.1\; \sigma^2 \frac{M}{M - 1}
# \end{aligned}
# $$
#
# Note the $\frac{M}{M - 1}$: the running variance is the *unbiased* estimate,
# while the normalisation itself uses the biased one. They start at 0 and 1,
# so it takes a few dozen batches to forget the start: the distance to the
# truth shrinks like $0.9^t$, then stays at the noise of ~20 batches.
# ``momentum=None`` averages all batches seen so far equally instead.

# %%
bn = BatchNorm2d(3)
x = batch()
M = x.shape[0] * x.shape[2] * x.shape[3]
bn(x)
expected_mean = 0.1 * x.mean(axis=(0, 2, 3))
expected_var = 0.9 * 1.0 + 0.1 * x.var(axis=(0, 2, 3)) * M / (M - 1)
print(f"after one batch: running_mean {bn.running_mean.round(4)} (expected {expected_mean.round(4)})")
print(f"                 running_var  {bn.running_var.round(4)} (expected {expected_var.round(4)})")
assert np.allclose(to_numpy(bn.running_mean), to_numpy(expected_mean), rtol=1e-5)
assert np.allclose(to_numpy(bn.running_var), to_numpy(expected_var), rtol=1e-5)

steps = 60 if args.quick else 200
layers = {"momentum 0.1": BatchNorm2d(3, momentum=0.1), "momentum None (cumulative)": BatchNorm2d(3, momentum=None)}
history = {name: {"mean": [], "var": []} for name in layers}
for step in range(steps):
    x = batch()
    for name, layer in layers.items():
        layer(x)
        history[name]["mean"].append(to_numpy(layer.running_mean).copy())
        history[name]["var"].append(to_numpy(layer.running_var).copy())
for name, layer in layers.items():
    print(f"{name:>27}, after {steps} batches: running_mean {layer.running_mean.round(3)}, "
          f"running_var {layer.running_var.round(3)}   (true: {true_mean}, {true_std ** 2})")
    assert np.allclose(to_numpy(layer.running_mean), true_mean, atol=0.15 * true_std.max())
    assert np.allclose(to_numpy(layer.running_var), true_std ** 2, rtol=0.15)
assert int(layers["momentum 0.1"].num_batches_tracked) == steps

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
t = np.arange(1, steps + 1)
for ax, key, truth, start in ((axes[0], "mean", true_mean, 0.0), (axes[1], "var", true_std ** 2, 1.0)):
    for c in range(3):
        for name, style in zip(layers, ("-", "--")):
            values = np.concatenate([[start], np.array(history[name][key])[:, c]])
            ax.plot(np.arange(steps + 1), values, style, color=f"C{c}")
        ax.hlines(truth[c], 0, steps, color=f"C{c}", linestyle=":", linewidth=1)
        ax.annotate(f"channel {c}", (steps, truth[c]), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8, color=f"C{c}")
    ax.set_xlim(0, steps * 1.15)
    ax.grid(alpha=0.3)
axes[0].set(xlabel="training batches seen", ylabel="running_mean", title="running_mean (starts at 0)")
axes[1].set(xlabel="training batches seen", ylabel="running_var", title="running_var (starts at 1)")
handles = [plt.Line2D([], [], color="k", linestyle="-", label="momentum 0.1 (moving average)"),
           plt.Line2D([], [], color="k", linestyle="--", label="momentum None (cumulative average)"),
           plt.Line2D([], [], color="k", linestyle=":", label="true value")]
axes[1].legend(handles=handles, fontsize=8, loc="center right")
fig.suptitle("BatchNorm2d's running statistics converge to the data's per-channel mean and variance")
fig.tight_layout()
fig.savefig(out_dir / "running_statistics.png", dpi=100)
print(f"figure: {out_dir / 'running_statistics.png'}")

# %% [markdown]
# ## 3. Eval mode: an image no longer depends on its batch
#
# In train mode the output for image 0 changes when the other images of its
# batch change. In eval mode (``.eval()``) the layer uses the running
# statistics, which are constants, so it does not. Forgetting ``model.eval()``
# before testing is a classic bug: the accuracy then depends on the batch
# size.

# %%
bn = layers["momentum 0.1"]
x = batch(8)
others = batch(8)
others[0] = x[0]
bn.train()
in_a, in_b = bn(x)[0], bn(others)[0]
print(f"train mode: image 0 with two different batch-mates differs by {np.abs(in_a - in_b).max():.3f}")
assert np.abs(in_a - in_b).max() > 1e-2
bn.eval()
in_a, in_b, alone = bn(x)[0], bn(others)[0], bn(x[:1])[0]
print(f"eval mode:  differs by {np.abs(in_a - in_b).max():.1e}; alone in its batch: {np.abs(in_a - alone).max():.1e}")
assert np.array_equal(in_a, in_b) and np.array_equal(in_a, alone)
eval_expected = (x[0] - bn.running_mean.reshape(3, 1, 1)) / np.sqrt(bn.running_var.reshape(3, 1, 1) + bn.eps)
assert np.allclose(in_a, eval_expected, atol=1e-5)

# %% [markdown]
# ## 4. The backward pass, and why the upstream gradient must be random
#
# With $\partial L / \partial \hat{x} = \gamma\, \text{dout}$ (``dx_hat``) and sums over the $M$
# values of a channel:
#
# $$
# \frac{\partial L}{\partial x} = \frac{1}{M \sqrt{\sigma^2 + \varepsilon}}
# \left( M \frac{\partial L}{\partial \hat{x}} - \sum \frac{\partial L}{\partial \hat{x}} -
# \hat{x} \sum \frac{\partial L}{\partial \hat{x}}\, \hat{x} \right)
# $$
#
# The last two terms come from $\mu$ and $\sigma^2$ depending on $x$. Now the
# trap: the output of a channel always sums to $M \beta$, a constant, so
# the gradient of ``sum(out)`` with respect to x is exactly ZERO. A check with
# ``dout = 1`` compares zero with (almost) zero and passes even for a
# backward pass that forgets a term. ``resnet_np.gradcheck`` therefore always
# uses a RANDOM upstream gradient. Below, a backward pass without the
# $\hat{x} \sum \frac{\partial L}{\partial \hat{x}} \hat{x}$ term passes the ``dout = 1`` test and fails
# the random one. First, the formula as the library writes it (``BatchNorm2d``'s
# plain path, ``resnet_np/layers/batchnorm.py``; the default fast path computes
# the same in fewer passes over the data, ``resnet_np/fast/batchnorm.py``):

# %%
import inspect  # noqa: E402

from resnet_np.layers.batchnorm import input_grad  # noqa: E402

print(inspect.getsource(input_grad))

bn = BatchNorm2d(3).astype("float64")
bn.weight.data[...] = to_device([1.5, 0.7, 1.0])
x = batch(4, 3).astype(np.float64)
out = bn(x)


def forgetful_backward(dout):
    """BatchNorm's train-mode backward WITHOUT the x_hat * sum(dx_hat * x_hat) term (a planted bug)."""
    var = x.var(axis=(0, 2, 3), keepdims=True)
    dx_hat = dout * bn.weight.data.reshape(1, 3, 1, 1)
    return (M_small * dx_hat - dx_hat.sum(axis=(0, 2, 3), keepdims=True)) / (M_small * np.sqrt(var + bn.eps))


M_small = x.shape[0] * x.shape[2] * x.shape[3]
for label, dout in [("dout = 1 (the gradient of sum(out))", np.ones_like(out)),
                    ("dout random", to_device(rng.standard_normal(out.shape)))]:
    bn.zero_grad()
    bn(x)
    dx = bn.backward(dout)
    dx_bug = forgetful_backward(dout)
    dx_numeric = numerical_gradient(lambda: float((dout * bn(x)).sum()), x)
    print(f"{label}:")
    print(f"    largest |dx|: finite differences {np.abs(dx_numeric).max():.1e}, correct backward "
          f"{np.abs(dx).max():.1e}, forgetful backward {np.abs(dx_bug).max():.1e}")
    if dout.std() == 0:
        # Every gradient is zero up to rounding: the check cannot tell right from wrong.
        assert max(np.abs(dx_numeric).max(), np.abs(dx).max(), np.abs(dx_bug).max()) < 1e-6
        print("    all three are zero up to rounding: this check would pass the bug")
    else:
        err_right, err_bug = rel_error(dx, dx_numeric), rel_error(dx_bug, dx_numeric)
        print(f"    relative error: correct backward {err_right:.1e}, forgetful backward {err_bug:.1e}  <- caught")
        assert err_right < 1e-7 and err_bug > 1e-2

# The full check: input, weight and bias, in train and in eval mode (random dout, float64).
for mode in ("train", "eval"):
    layer = BatchNorm2d(3)
    layer.weight.data[...] = to_device([1.5, 0.7, 1.0])
    layer.bias.data[...] = to_device([0.1, -0.2, 0.3])
    layer.running_mean[...] = to_device([2.0, -1.0, 0.0])
    layer.running_var[...] = to_device([3.0, 0.5, 1.0])
    layer.train(mode == "train")
    report = check_module(layer, batch(4, 3))
    print(f"{mode} mode:\n{report}")
    assert report.ok

# %% [markdown]
# ## What to remember
#
# * Train mode normalises with the batch's statistics and updates the running
#   ones (unbiased variance, momentum 0.1); eval mode uses the running ones.
# * The backward pass has three terms; the output's per-channel sum is
#   constant, so only a random upstream gradient can test it.
