"""The engine's in-place passes inside a block (resnet_np/fast/blocks.py) equal the layers called one by one.

On the fast path a BasicBlock or Bottleneck writes ReLU (and the residual
addition) over batch norm's output, keeps its ReLUs' masks as bits, and in
backward writes ReLU's and batch norm's gradient over the convolution's.
Each test runs the same block from the same weights both ways, in float64:
through the engine (``fast_blocks.applies`` true) and layer by layer (a
forward hook on the block's ReLU, which turns the engine off, or the plain
layers), and compares outputs, dx, every parameter gradient, the running
statistics and what the layers keep for backward.
"""

import inspect
import sys
import textwrap

import numpy as np
import pytest

import resnet_np
from resnet_np import fast, use_fast
from resnet_np import layers as L
from resnet_np.fast import blocks as fast_blocks
from resnet_np.fast import relu as fast_relu
from resnet_np.gradcheck import rel_error
from resnet_np.models import BasicBlock, Bottleneck
from resnet_np.models.shortcut import ShortcutA

TOL = 1e-10


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def projection(cin, cout, stride):
    return L.Sequential(L.Conv2d(cin, cout, 1, stride=stride, bias=False), L.BatchNorm2d(cout))


class SumsOfItsOwn(L.BatchNorm2d):
    """A batch norm that takes its backward sums its own way (as SyncBatchNorm adds other processes')."""

    def _gradient_sums(self, dout, x_centered):
        return super()._gradient_sums(dout, x_centered)


BLOCKS = {
    # name: (block maker, input shape)
    "basic, identity": (lambda: BasicBlock(4, 4), (5, 4, 6, 6)),
    "basic, projection": (lambda: BasicBlock(4, 6, stride=2, downsample=projection(4, 6, 2)), (5, 4, 7, 6)),
    "basic, shortcut A": (lambda: BasicBlock(4, 8, stride=2, downsample=ShortcutA(4, 8, 2)), (3, 4, 6, 6)),
    "basic, no shortcut": (lambda: BasicBlock(4, 4, residual=False), (3, 4, 5, 5)),
    "basic, batch norm subclass": (lambda: BasicBlock(4, 4, norm_layer=SumsOfItsOwn), (3, 4, 5, 5)),
    "bottleneck, grouped": (lambda: Bottleneck(16, 4, groups=2, base_width=32), (3, 16, 5, 5)),
    "bottleneck, projection": (lambda: Bottleneck(8, 4, stride=2, downsample=projection(8, 16, 2)), (3, 8, 6, 6)),
}


def prepared(make, train):
    """The block with the same weights every time, in float64, running statistics not 0 and 1."""
    resnet_np.backend.manual_seed(0)
    block = make().astype("float64")
    for name, buffer in block.named_buffers():
        if name.endswith("running_mean"):
            buffer[...] = np.linspace(-0.2, 0.2, buffer.size)
        elif name.endswith("running_var"):
            buffer[...] = np.linspace(0.5, 1.5, buffer.size)
    return block.train(train)


def layer_by_layer(block):
    """Turn the engine's block passes off for this block (a hook on a layer: the engine stays away)."""
    block.relu2.register_forward_hook(lambda *args: None)
    return block


def run(block, x, dout, forward_fast=True, backward_fast=True):
    with use_fast(forward_fast):
        out = block(x)
        kept = {name: np.array(m._cache, copy=True) for name, m in block.named_modules() if isinstance(m, L.ReLU)}
    with use_fast(backward_fast):
        dx = block.backward(dout)
    grads = {name: p.grad.copy() for name, p in block.named_parameters()}
    buffers = {name: np.array(b, copy=True) for name, b in block.named_buffers()}
    return out, dx, grads, buffers, kept


def assert_same(a, b, tol=TOL):
    out_a, dx_a, grads_a, buf_a, kept_a = a
    out_b, dx_b, grads_b, buf_b, kept_b = b
    assert rel_error(out_a, out_b) < tol, f"forward: {rel_error(out_a, out_b):.1e}"
    assert rel_error(dx_a, dx_b) < tol, f"dx: {rel_error(dx_a, dx_b):.1e}"
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert rel_error(grads_a[name], grads_b[name]) < tol, f"{name}: {rel_error(grads_a[name], grads_b[name]):.1e}"
    for name in buf_a:
        np.testing.assert_allclose(buf_a[name], buf_b[name], rtol=1e-12, atol=1e-14, err_msg=name)
    assert kept_a.keys() == kept_b.keys()
    for name in kept_a:   # ReLU's mask: bits in the engine, bools layer by layer, the same values
        np.testing.assert_array_equal(kept_a[name], kept_b[name], err_msg=name)


def compare(name, train=True, **paths):
    make, shape = BLOCKS[name]
    x = randn(*shape)
    fused = prepared(make, train)
    assert fast_blocks.applies(fused)
    dout = randn(*prepared(make, train)(x).shape, seed=1)
    reference = layer_by_layer(prepared(make, train))
    assert not fast_blocks.applies(reference)
    x_before, dout_before = x.copy(), dout.copy()
    result = run(fused, x, dout, **paths)
    np.testing.assert_array_equal(x, x_before)          # the engine writes over its own arrays only
    np.testing.assert_array_equal(dout, dout_before)
    assert_same(result, run(reference, x, dout))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_through_the_engine_equals_layer_by_layer(name, train):
    compare(name, train)


@pytest.mark.parametrize("forward_fast,backward_fast", [(True, False), (False, True)],
                         ids=["engine forward, plain backward", "plain forward, engine backward"])
@pytest.mark.parametrize("name", ["basic, projection", "bottleneck, grouped"])
def test_forward_on_one_path_backward_on_the_other(name, forward_fast, backward_fast):
    compare(name, True, forward_fast=forward_fast, backward_fast=backward_fast)


def test_pieces_and_threads(monkeypatch):
    """One image per piece and three threads: every piece and every share lands where it belongs."""
    monkeypatch.setattr(fast.threads, "PIECE_BYTES", 1)
    monkeypatch.setattr(fast.threads, "MIN_PART_BYTES", 1)
    old = fast.get_num_threads()
    fast.set_num_threads(3)
    try:
        compare("basic, projection")
        compare("bottleneck, grouped")
    finally:
        fast.set_num_threads(old)


def test_layers_keep_what_their_own_forward_keeps():
    """After the engine's forward, each layer's backward works on its own, and summary's shapes are set."""
    make, shape = BLOCKS["basic, projection"]
    block = prepared(make, True)
    x = randn(*shape)
    out = block(x)
    assert block.relu1.output_shape == block.add.output_shape == block.relu2.output_shape == out.shape
    dout = randn(*out.shape, seed=1)
    expected = dout * (out > 0)
    np.testing.assert_array_equal(block.relu2.backward(dout), expected)
    with use_fast(False):
        np.testing.assert_array_equal(block.relu2.backward(dout), expected)
    assert block.add.backward(expected)[0] is expected


def test_a_hook_turns_the_engine_off_and_is_called():
    block = prepared(BLOCKS["basic, identity"][0], True)
    seen = []
    block.relu1.register_forward_hook(lambda m, inputs, out: seen.append(("forward", out.shape)))
    block.bn1.register_full_backward_hook(lambda m, gi, go: seen.append(("backward", gi.shape)))
    assert not fast_blocks.applies(block)
    block.backward(randn(*block(randn(2, 4, 5, 5)).shape, seed=1))
    assert seen == [("forward", (2, 4, 5, 5)), ("backward", (2, 4, 5, 5))]


def test_a_wrong_shortcut_is_named_by_the_addition():
    block = BasicBlock(4, 8, stride=2)     # no downsample: the shapes do not meet
    with pytest.raises(ValueError, match="the two inputs must have the same shape"):
        block(randn(2, 4, 6, 6).astype(np.float32))


def test_packed_mask_reads_as_the_bool_mask():
    x = randn(3, 5, 3, 7)                  # 105 values per image: not a whole number of bytes
    x[0, 0, 0] = 0.0
    mask = fast_relu.new_mask(x)
    out, mask = fast_relu.relu_into(x, x.copy(), mask)
    assert isinstance(mask, fast_relu.PackedMask) and mask.bits.nbytes == 3 * 14
    np.testing.assert_array_equal(np.asarray(mask), x > 0)
    np.testing.assert_array_equal(mask.images(1, 3), x[1:3] > 0)
    np.testing.assert_array_equal(out, np.maximum(x, 0))


# --------------------------------------------------------------------------------------------------
# Planted bugs: the comparisons above must notice each
# --------------------------------------------------------------------------------------------------

def broken_copy(owner, name, old, new):
    """A copy of the function (or method) ``owner.name`` with one piece of its source replaced."""
    source = textwrap.dedent(inspect.getsource(getattr(owner, name)))
    assert source.count(old) == 1, f"{name}: {old!r} must occur once"
    namespace = dict(vars(sys.modules[owner.__module__] if isinstance(owner, type) else owner))
    exec(compile(source.replace(old, new), f"<{name} with a planted bug>", "exec"), namespace)
    return namespace[name]


PLANTED = {
    "the addition left out": (fast_blocks, "add_relu_", "residual=identity", "residual=None", "basic, identity"),
    "ReLU's backward left out": (fast_blocks, "masked_gradient_sums_", "xp.multiply(d[i0:i1], mask_of(mask, i0, i1), "
                                 "out=d[i0:i1])", "pass", "bottleneck, grouped"),
    "ReLU's backward left out, subclass": (fast_blocks, "relu_bn_backward_", "relu_backward(d, relu._cache, out=d)",
                                           "pass", "basic, batch norm subclass"),
    "a thread's sums dropped": (fast_blocks, "masked_gradient_sums_", "[s for s, _ in parts]", "[parts[0][0]]",
                                "basic, projection"),
    "the shortcut's gradient added twice": (fast_blocks, "add_", "xp.add(a[n0:n1], b[n0:n1]",
                                            "xp.add(b[n0:n1], b[n0:n1]", "basic, projection"),
    "bits unpacked in the wrong order": (fast_relu.PackedMask, "images", "count=self.per_image)",
                                         "count=self.per_image, bitorder='little')", "basic, identity"),
    "the last piece dropped": (fast.threads, "pieces", "range(n0, n1, step)", "range(n0, n1 - 1, step)",
                               "basic, projection"),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_bug_in_the_block_passes_is_caught(planted, monkeypatch):
    module, name, old, new, case = PLANTED[planted]
    monkeypatch.setattr(fast.threads, "PIECE_BYTES", 1)     # several pieces per share, several shares
    monkeypatch.setattr(fast.threads, "MIN_PART_BYTES", 1)
    threads = fast.get_num_threads()
    fast.set_num_threads(3)
    try:
        compare(case)                                       # the engine as it is passes ...
        broken = broken_copy(module, name, old, new)
        if module is fast_relu.PackedMask:
            monkeypatch.setattr(module, name, broken)
        else:
            for where in (module, fast_blocks, fast_relu, fast.batchnorm):
                if hasattr(where, name):
                    monkeypatch.setattr(where, name, broken)
        # ... and with the bug it fails (a dropped piece leaves memory unwritten: whatever it held may overflow,
        # which is not what is checked here; the engine's helper threads share this error state)
        with pytest.raises(AssertionError), np.errstate(all="ignore"):
            compare(case)
    finally:
        fast.set_num_threads(threads)
