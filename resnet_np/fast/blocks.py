"""Where batch norm, ReLU and the residual addition meet inside a block: fewer passes, fewer arrays alive.

A residual block runs ``relu(bn(x))`` and ``relu(bn(x) + identity)``. Layer
by layer, each of those steps writes a new array the size of the
activation — batch norm's output, the sum, ReLU's output — and reads the one
before from memory again. In backward, ReLU's gradient and batch norm's are
two more. The plain twin of each function here is those layers called one
after the other (``tests/test_fast_blocks.py`` checks them equal, in float64):

* ``relu_(relu, x)``: ReLU written over batch norm's output, which nothing
  else holds (the twin: ``relu(x)``);
* ``add_relu_(add, relu, x, identity)``: the addition and ReLU in one pass,
  a few images at a time so that the sum is still in the cache when ReLU
  reads it, written over batch norm's output (the twin: ``relu(add(x, identity))``);
* ``relu_bn_backward_(relu, bn, d)``: ReLU's and batch norm's backward,
  written over the convolution's fresh gradient ``d`` (the twin:
  ``bn.backward(relu.backward(d))``);
* ``add_(a, b)``: the block's input gradient summed into the branch's (the
  twin: ``a + b``).

Each leaves the layers as their own passes would: ReLU's mask, the
addition's shape, ``output_shape``, batch norm's cache and its parameters'
gradients (batch norm itself runs as the layer it is, ``bn(x)`` and
``bn._gradient_sums``: ``SyncBatchNorm`` works here too). So a forward pass
taken here can be followed by the layers' own backward, and the other way
round.

Writing over an array is safe only where nobody else can see it: ``applies``
says yes on the fast path only, and only while no hook watches the block's
layers (a hook may keep the array it is shown).
"""

from ..backend import get_array_module
from ..checks import check_dout, check_forward_done
from ..layers import batchnorm as plain_batchnorm
from ..layers.add import Add
from ..layers.batchnorm import BatchNorm2d
from ..layers.relu import ReLU
from . import batchnorm as fast_batchnorm
from . import fast_enabled, threads
from .relu import mask_of, new_mask, relu_backward, relu_into


def applies(block):
    """Whether ``block`` may take the passes here: the fast path, its own layers, and no hook on any of them."""
    if not fast_enabled():
        return False
    for name, layer in vars(block).items():
        if not hasattr(layer, "_backward_hooks"):   # not a layer
            continue
        if layer._forward_hooks or layer._backward_hooks:
            return False
        if name.startswith("relu") and type(layer) is not ReLU:
            return False
        if name.startswith("bn") and not isinstance(layer, BatchNorm2d):
            return False
        if name == "add" and type(layer) is not Add:
            return False
    return True


def relu_(relu, x):
    """relu(x), written over ``x`` (batch norm's output, held by nobody else)."""
    relu._cache = None
    out, relu._cache = relu_into(x, x, new_mask(x))
    relu.output_shape = out.shape
    return out


def add_relu_(add, relu, x, identity):
    """relu(add(x, identity)) in one pass, written over ``x`` (batch norm's output)."""
    add._cache = relu._cache = None
    if identity.shape != x.shape or identity.dtype != x.dtype:
        return relu(add(x, identity))           # the layer's own message for a wrong shortcut
    add._cache = add.output_shape = x.shape
    out, relu._cache = relu_into(x, x, new_mask(x), residual=identity)
    relu.output_shape = out.shape
    return out


def relu_bn_backward_(relu, bn, d):
    """bn.backward(relu.backward(d)), written over ``d`` (a convolution's fresh gradient, held by nobody else).

    Batch norm's two sums are taken in the pass that masks d (one hand-off to the threads fewer), unless a
    subclass computes them its own way (``SyncBatchNorm``: its ``_gradient_sums`` is called).
    """
    check_forward_done(relu, relu._cache)
    check_dout(relu, d, relu._cache.shape)
    check_forward_done(bn, bn._cache)
    trained, x_centered, inv_std, M = bn._cache
    check_dout(bn, d, x_centered.shape)
    if type(bn)._gradient_sums is BatchNorm2d._gradient_sums:
        sum_dout, sum_dout_xc = masked_gradient_sums_(d, relu._cache, x_centered)
        if bn.affine and bn.weight.requires_grad:     # what BatchNorm2d._gradient_sums adds
            bn.weight.accumulate_grad(sum_dout_xc * inv_std)
        if bn.affine and bn.bias.requires_grad:
            bn.bias.accumulate_grad(sum_dout)
    else:
        relu_backward(d, relu._cache, out=d)
        sum_dout, sum_dout_xc = bn._gradient_sums(d, x_centered)
    weight = bn._scale_and_shift(d)[0]
    return fast_batchnorm.input_grad(d, x_centered, inv_std, weight, sum_dout, sum_dout_xc, M, trained, out=d)


def masked_gradient_sums_(d, mask, x_centered):
    """d *= mask (in place), and batch norm's (sum(d), sum(d * x_centered)) per channel, in one hand-off."""
    xp = get_array_module(d)

    def images(n0, n1):
        for i0, i1 in threads.pieces(n0, n1, threads.image_bytes(d)):
            xp.multiply(d[i0:i1], mask_of(mask, i0, i1), out=d[i0:i1])
        return plain_batchnorm.channel_sum(d[n0:n1]), plain_batchnorm.channel_sum(d[n0:n1], x_centered[n0:n1])
    parts = threads.for_each_part(images, len(d), threads.min_images(d), xp)
    return (fast_batchnorm.add_in_order([s for s, _ in parts]),
            fast_batchnorm.add_in_order([s_xc for _, s_xc in parts]))


def add_(a, b):
    """a + b, written over ``a`` (the branch's fresh gradient), a share of the images per thread."""
    xp = get_array_module(a)
    threads.for_each_part(lambda n0, n1: xp.add(a[n0:n1], b[n0:n1], out=a[n0:n1]), len(a), threads.min_images(a),
                          xp)
    return a
