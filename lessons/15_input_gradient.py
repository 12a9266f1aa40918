# %% [markdown]
# # Lesson 15 — What the gradient with respect to the image shows: saliency, Grad-CAM, adversarial examples
#
# Every backward pass in this library ends with one more product than
# training needs: the first convolution's backward returns
# $\partial L / \partial x$, the gradient with respect to the **image**.
# Training throws it away. This lesson looks at it, on the ResNet-20 that
# ships with the package (`resnet20(weights="cifar10")`, about 91 % on
# CIFAR-10's test set), and uses it three ways:
#
# 1. **saliency maps**: which pixels would change the class score most;
# 2. **Grad-CAM** on the last stage: which *places* the network's last
#    features look at, at 8x8;
# 3. **adversarial examples** (the fast gradient sign method): a change of
#    each pixel by at most $\epsilon$, invisible at $\epsilon = 2/255$,
#    chosen along the gradient, breaks the network; the same amount of
#    random noise does not.
#
# Everything comes from the library's own hand-written backward, checked
# here against finite differences on a few pixels.
#
# Run: `python lessons/15_input_gradient.py` (add `--quick` for a few
# hundred test images). It reads CIFAR-10's test set from
# `$RESNET_NP_DATA/cifar10` (downloaded if missing, except in quick mode).

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np.backend import to_device, to_numpy  # noqa: E402
from resnet_np.data import load_dataset  # noqa: E402
from resnet_np.layers import SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import pretrained, resnet20, weights  # noqa: E402

from _common import stop_without_data  # noqa: E402  (lessons/_common.py)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="a few hundred test images, for the test suite")
parser.add_argument("--out", default="out/lessons/15_input_gradient", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
start_time = time.perf_counter()

# %% [markdown]
# ## 1. The network and the images
#
# The shipped weights were trained on images normalised per channel,
# $x = (\text{pixel}/255 - \mu_c)/\sigma_c$, with the training set's
# $\mu$ and $\sigma$ (stored beside the weights). The network works on $x$;
# a change of the *pixels* by $\delta$ changes $x$ by $\delta/\sigma_c$.
#
# The network lives on the backend's device (NumPy, or CuPy with
# `RESNET_NP_BACKEND=cupy`); the pixels stay on the host, for plotting.
# `to_device` sends what the network reads, `to_numpy` brings back what
# NumPy and matplotlib read: CuPy's arrays never convert by themselves.

# %%
_, meta = weights.read_state_dict(pretrained.path_of("resnet20", "cifar10"))
info = meta["pretrained"]
mean = to_device(np.array(info["mean"], dtype=np.float32).reshape(1, 3, 1, 1))
std = to_device(np.array(info["std"], dtype=np.float32).reshape(1, 3, 1, 1))
model = resnet20(weights="cifar10")
model.eval()  # batch norm with its running statistics: one image's gradient does not depend on the others

try:
    test = load_dataset("cifar10", train=False, download=not args.quick)
except (OSError, ValueError) as e:   # no CIFAR-10 files (--quick never downloads), a failed download, a bad MD5
    stop_without_data(e, args.quick)
count = 200 if args.quick else 2000
pick = np.random.default_rng(0).permutation(len(test))[:count]
pixels = test.images[pick].astype(np.float32) / 255.0   # (N, 3, 32, 32) in [0, 1]
labels = test.labels[pick]
y_device = to_device(labels)
classes = test.classes


def normalise(p):
    """Pixels in [0, 1] (host or device) -> the network's input, on the device."""
    return (to_device(p) - mean) / std


def predict(p, batch=250):
    """The predicted classes, on the host."""
    return np.concatenate([to_numpy(model(normalise(p[i:i + batch])).argmax(axis=1)) for i in range(0, len(p), batch)])


clean_accuracy = float((predict(pixels) == labels).mean())
print(f"{len(labels)} test images, accuracy {clean_accuracy:.1%}")
assert clean_accuracy > 0.85, clean_accuracy

# %% [markdown]
# ## 2. The gradient with respect to the image, and a check
#
# The forward pass, written out, keeps the last stage's output $A$ (64
# maps of 8x8): Grad-CAM needs it. The backward pass is the chain rule,
# each layer's `backward` in reverse order; what comes out of `conv1` is
# $\partial L / \partial x$. We differentiate the loss of the true class,
# $L = -\log p_y$ (mean over the batch, hence the factor $N$ below to get
# each image's own gradient).


# %%
def forward_backward(x, y):
    """The loss, the logits, the last stage's output A, and the gradients of the loss by A and by x."""
    A = model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x))))))
    logits = model.fc(model.flatten(model.avgpool(A)))
    criterion = SoftmaxCrossEntropy()
    loss = criterion(logits, y)
    d = criterion.backward() * len(y)  # each image's own loss, not the batch mean
    dA = model.avgpool.backward(model.flatten.backward(model.fc.backward(d)))
    d = model.layer1.backward(model.layer2.backward(model.layer3.backward(dA)))
    dx = model.conv1.backward(model.bn1.backward(model.relu.backward(d)))
    return loss, logits, A, dA, dx


# %% [markdown]
# Finite differences in float64 on five pixels of one image: nudge one
# input value by $\pm h$ and watch the loss.

# %%
model.astype("float64")
x64 = normalise(pixels[:1]).astype(np.float64)
_, _, _, _, dx64 = forward_backward(x64, y_device[:1])
rng = np.random.default_rng(1)
worst = 0.0
for _ in range(5):
    c, i, j = rng.integers(0, 3), rng.integers(0, 32), rng.integers(0, 32)
    h, saved = 1e-5, float(x64[0, c, i, j])  # a number: on CuPy, x64[0, c, i, j] is a view that the next line changes
    x64[0, c, i, j] = saved + h
    plus = SoftmaxCrossEntropy()(model(x64), y_device[:1])
    x64[0, c, i, j] = saved - h
    minus = SoftmaxCrossEntropy()(model(x64), y_device[:1])
    x64[0, c, i, j] = saved
    numeric, analytic = (plus - minus) / (2 * h), float(dx64[0, c, i, j])
    error = abs(numeric - analytic) / max(1e-8, abs(numeric) + abs(analytic))
    worst = max(worst, error)
    print(f"pixel (c={c}, {i:2d}, {j:2d}): backward {analytic:+.6e}, finite differences {numeric:+.6e}, "
          f"rel error {error:.1e}")
assert worst < 1e-5, worst
model.astype("float32")

# %% [markdown]
# ## 3. Saliency maps
#
# The simplest reading (Simonyan et al., 2013): the size of the gradient
# of the class score $s_y$ (the logit) at each pixel, the largest over the
# three colour channels. Bright pixels are those where a small change moves
# the score most. Here we use the gradient of the loss, which is the score's
# gradient minus the softmax-weighted gradients of the other scores: for a
# confident prediction the two are nearly the same.

# %%
show = 8
x = normalise(pixels[:show])
loss, logits, A, dA, dx = forward_backward(x, y_device[:show])
saliency = to_numpy(np.abs(dx).max(axis=1))  # (show, 32, 32), on the host for matplotlib
saliency /= saliency.reshape(show, -1).max(axis=1).reshape(show, 1, 1)

# %% [markdown]
# ## 4. Grad-CAM on the last stage
#
# Grad-CAM (Selvaraju et al., 2017) weighs each of the last stage's maps
# $A_k$ by the mean of the score's gradient over its positions,
# $\alpha_k = \frac{1}{64}\sum_{i,j} \partial s_y / \partial A_k[i, j]$,
# and keeps the positive part of $\sum_k \alpha_k A_k$: an 8x8 map of where
# the evidence for class $y$ is. Here the score's gradient comes from the
# same backward, started at $\partial s_y / \partial\,\text{logits} =
# \text{onehot}(y)$.
#
# For a network that ends in global average pooling and one linear layer,
# $\partial s_y / \partial A_k[i, j] = W_{\text{fc}}[y, k] / 64$ at every
# position: Grad-CAM is then the class activation map of Zhou et al. (2016).
# The backward pass must agree, and it does:

# %%
onehot = to_device(np.eye(len(classes), dtype=np.float32)[labels[:show]])
model(x)
d_score_A = model.avgpool.backward(model.flatten.backward(model.fc.backward(onehot)))
alpha = d_score_A.mean(axis=(2, 3))                               # (show, 64)
assert np.allclose(alpha, model.fc.weight.data[y_device[:show]] / 64, rtol=1e-5, atol=1e-9)
cam = np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)    # (show, 8, 8)
cam = cam / np.maximum(cam.reshape(show, -1).max(axis=1), 1e-12).reshape(show, 1, 1)
cam_up = to_numpy(cam.repeat(4, axis=1).repeat(4, axis=2))        # 8x8 -> 32x32, each cell a 4x4 patch

fig, axes = plt.subplots(3, show, figsize=(1.6 * show, 5.2))
predicted = to_numpy(logits.argmax(axis=1))
for k in range(show):
    image = pixels[k].transpose(1, 2, 0)
    axes[0, k].imshow(image)
    axes[0, k].set_title(f"{classes[labels[k]]}\n(says {classes[predicted[k]]})", fontsize=8)
    axes[1, k].imshow(saliency[k], cmap="gray")
    axes[2, k].imshow(image)
    axes[2, k].imshow(cam_up[k], cmap="jet", alpha=0.45)
for row, name in enumerate(("image", "saliency |dL/dx|", "Grad-CAM, layer3")):
    axes[row, 0].set_ylabel(name, fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
fig.savefig(out_dir / "saliency_gradcam.png", dpi=110)
plt.show()

# %% [markdown]
# ## 5. The fast gradient sign method
#
# Goodfellow et al. (2015): move every pixel by $\epsilon$ in the direction
# that increases the loss, the sign of the gradient, and clip to $[0, 1]$:
#
# $$
# \text{pixel}_{\text{adv}} = \text{clip}\big(\text{pixel} + \epsilon\,
# \text{sign}(\partial L / \partial\, \text{pixel}),\; 0,\; 1\big).
# $$
#
# Since $x = (\text{pixel} - \mu)/\sigma$ with $\sigma > 0$, the sign of the
# gradient by the pixel is the sign of $\partial L / \partial x$. One
# gradient per image, computed once; then the accuracy at each $\epsilon$,
# and, as a control, the same $\epsilon$ with random signs.

# %%
signs = np.empty_like(pixels)
for i in range(0, len(pixels), 250):
    signs[i:i + 250] = to_numpy(np.sign(forward_backward(normalise(pixels[i:i + 250]), y_device[i:i + 250])[4]))
random_signs = np.random.default_rng(2).choice(np.array([-1.0, 1.0], dtype=np.float32), size=pixels.shape)
epsilons = [0, 0.5, 1, 2, 4, 8]  # in units of 1/255, one grey level
adversarial, noisy = [], []
for eps in epsilons:
    adversarial.append(float((predict(np.clip(pixels + eps / 255 * signs, 0, 1)) == labels).mean()))
    noisy.append(float((predict(np.clip(pixels + eps / 255 * random_signs, 0, 1)) == labels).mean()))
    print(f"epsilon {eps:>3}/255: accuracy {adversarial[-1]:6.1%} along the gradient's sign, "
          f"{noisy[-1]:6.1%} with random signs")
two = epsilons.index(2)
assert adversarial[two] < clean_accuracy - 0.4, adversarial   # 2/255 along the gradient breaks it...
assert noisy[two] > clean_accuracy - 0.05, noisy              # ...the same amount of random noise does not
assert noisy[-1] > adversarial[-1] + 0.4, (noisy, adversarial)
assert all(a >= b - 0.02 for a, b in zip(adversarial, adversarial[1:])), adversarial

fig, (curve, *examples) = plt.subplots(1, 4, figsize=(12, 3.2), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
curve.plot(epsilons, [100 * a for a in adversarial], "o-", label="along sign(dL/dx) (FGSM)")
curve.plot(epsilons, [100 * a for a in noisy], "s--", label="random signs, same size")
curve.set_xlabel("epsilon (grey levels of 1/255)")
curve.set_ylabel("test accuracy (%)")
curve.set_ylim(0, 100)
curve.legend(fontsize=8)
curve.set_title(f"ResNet-20 on {len(labels)} CIFAR-10 test images", fontsize=9)
k, eps = 0, 2
attacked = np.clip(pixels[k] + eps / 255 * signs[k], 0, 1)
said = predict(attacked[None])[0]
for ax, image, title in ((examples[0], pixels[k], f"{classes[labels[k]]}"),
                         (examples[1], attacked, f"+ {eps}/255 along the sign:\nsays {classes[said]}"),
                         (examples[2], 0.5 + 20 * (attacked - pixels[k]), "the change, x20")):
    ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
fig.savefig(out_dir / "fgsm.png", dpi=110)
plt.show()

# %% [markdown]
# ## What it shows
#
# * The gradient with respect to the input costs one more product in the
#   first convolution's backward; the finite differences agree with it to
#   about $10^{-9}$ in float64.
# * Saliency maps are noisy: a single pixel's gradient mixes what matters
#   with the network's high-frequency sensitivity. Grad-CAM, at the
#   resolution of the last stage (8x8 here), is coarser and steadier: it
#   shows *where*, not *which pixel*.
# * A change of 2 grey levels per pixel, which no eye sees, chosen along the
#   gradient's sign, costs the network most of its accuracy; the same
#   amount of random noise costs it nearly nothing (at 8 grey levels, random
#   noise starts to cost a few points; the gradient's sign leaves chance). The network is locally
#   almost linear in its input (Goodfellow et al.'s explanation), and in 3072
#   dimensions many small aligned changes add up. Adversarial training, which
#   trains on such images, is the standard defence.

# %%
print(f"lesson 15 ran in {time.perf_counter() - start_time:.0f} s")
