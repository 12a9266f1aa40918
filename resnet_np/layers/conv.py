"""2-D convolution: a naive reference, im2col + one matrix product per group, and its backward (lessons 02, 03).

``resnet_np/fast/conv.py`` holds twins of ``conv2d_im2col`` and
``conv2d_backward`` (the same arguments, the same results) that run in
cache-sized chunks on every core; ``Conv2d`` takes one or the other as
``resnet_np.use_fast`` says.
"""

from .. import fast, init
from ..backend import get_array_module
from ..checks import (
    check_dim,
    check_dout,
    check_float_input,
    check_forward_done,
    check_not_empty_image,
    layer_name,
    pair,
    positive_int,
)
from ..fast import conv as fast_conv
from ..fast import row_taps, transposed_conv
from ..module import Module, Parameter
from .im2col import col2im, conv_output_size, im2col, pad2d
from .padding import PADDING_MODES, check_padding_fits, pad, pad_backward, same_padding


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct convolution, one output position at a time: slow, obviously right.

        out[n, f, oh, ow] = b[f] + sum_{c, i, j} x_pad[n, g*Cg + c, oh*SH + i*DH, ow*SW + j*DW] * W[f, c, i, j]

    with G groups: output channel f belongs to group g = f // (F/G) and sees
    only that group's Cg = C/G input channels (c runs over 0..Cg-1).
    x: (N, C, H, W), weight: (F, C/G, KH, KW), bias: (F,) or None -> (N, F, OH, OW).
    Kept for teaching and as the reference ``conv2d_im2col`` is tested against.
    """
    xp = get_array_module(x)
    SH, SW = pair(stride, "stride", "conv2d_naive", 1)
    PH, PW = pair(padding, "padding", "conv2d_naive", 0)
    DH, DW = pair(dilation, "dilation", "conv2d_naive", 1)
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    G = C // Cg
    Fg = F // G
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    x_pad = pad2d(x, PH, PW)
    out = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * SH:oh * SH + DH * (KH - 1) + 1:DH,
                           ow * SW:ow * SW + DW * (KW - 1) + 1:DW]  # (N, C, KH, KW)
            for g in range(G):
                out[:, g * Fg:(g + 1) * Fg, oh, ow] = xp.tensordot(
                    window[:, g * Cg:(g + 1) * Cg], weight[g * Fg:(g + 1) * Fg], axes=([1, 2, 3], [1, 2, 3]))
    if bias is not None:
        out += bias.reshape(1, F, 1, 1)
    return out


def conv2d_im2col(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The convolution as im2col and one matrix product per group (lesson 02):

        cols = im2col(x)                     (N, C*KH*KW, OH*OW)
        out  = W_mat @ cols + b              (N, F, OH*OW)

    with W_mat the weight (F, C/G, KH, KW) reshaped to (F, C/G*KH*KW). With
    G groups, output channels g*F/G ... see only rows g*C/G*KH*KW ... of
    cols: the product is G products, one per group (and image).
    x: (N, C, H, W), bias: (F,) or None -> (N, F, OH, OW), as ``conv2d_naive``.
    """
    SH, SW = pair(stride, "stride", "conv2d_im2col", 1)
    PH, PW = pair(padding, "padding", "conv2d_im2col", 0)
    DH, DW = pair(dilation, "dilation", "conv2d_im2col", 1)
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    G = groups
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    cols = im2col(x, (KH, KW), (SH, SW), (PH, PW), (DH, DW))            # (N, C*KH*KW, OH*OW)
    cols = cols.reshape(N, G, Cg * KH * KW, OH * OW)
    w_mat = weight.reshape(G, F // G, Cg * KH * KW)
    out = (w_mat @ cols).reshape(N, F, OH, OW)                          # (N, G, F/G, OH*OW): per group
    if bias is not None:
        out += bias.reshape(1, F, 1, 1)
    return out


def conv2d_backward(x, weight, dout, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True,
                    need_weight_grad=True):
    """(dx, dW) of ``conv2d_im2col`` for an upstream gradient dout (lesson 03); None where not asked for.

    With dout as a matrix (N, F, OH*OW) and cols = im2col(x), recomputed
    (cheaper in memory than keeping KH*KW copies of x between the passes):

        dW_mat = sum over n of dout[n] @ cols[n].T       (F, C/G*KH*KW)
        dcols  = W_mat.T @ dout                          (N, C*KH*KW, OH*OW)
        dx     = col2im(dcols)                           (N, C, H, W)

    each product taken group by group, as in the forward pass.
    """
    SH, SW = pair(stride, "stride", "conv2d_backward", 1)
    PH, PW = pair(padding, "padding", "conv2d_backward", 0)
    DH, DW = pair(dilation, "dilation", "conv2d_backward", 1)
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    G = groups
    P = dout.shape[2] * dout.shape[3]                                    # OH*OW (spelled out: N may be 0)
    dout_mat = dout.reshape(N, G, F // G, P)
    w_mat = weight.reshape(G, F // G, Cg * KH * KW)
    dx = dw = None
    if need_weight_grad:
        cols = im2col(x, (KH, KW), (SH, SW), (PH, PW), (DH, DW)).reshape(N, G, Cg * KH * KW, P)
        dw = (dout_mat @ cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(weight.shape)
    if need_input_grad:
        dcols = (w_mat.transpose(0, 2, 1) @ dout_mat).reshape(N, C * KH * KW, P)
        dx = col2im(dcols, x.shape, (KH, KW), (SH, SW), (PH, PW), (DH, DW))
    return dx, dw


BACKWARD_ROUTES = ("auto", "col2im", "transposed", "rows")
PADDING_STRINGS = ("same", "valid")


def conv_padding(padding, kernel_size, stride, dilation, padding_mode):
    """Conv2d's ``padding`` as PyTorch reads it: (what ``Conv2d.padding`` holds, (top, bottom, left, right)).

    An int or (PH, PW) pads PH rows above and below and PW columns left and
    right; "valid" is no padding; "same" (stride 1 only) keeps the size:
    ``padding.same_padding``, the extra row or column of an odd total at the
    bottom or right.
    """
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"Conv2d: Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"Conv2d: padding='same' is not supported for strided convolutions (got stride "
                             f"{stride}); use an int padding, or stride=1")
        pads = same_padding(kernel_size, dilation) if padding == "same" else (0, 0, 0, 0)
    else:
        padding = pair(padding, "padding", "Conv2d", 0)
        pads = (padding[0], padding[0], padding[1], padding[1])
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"Conv2d: padding_mode must be one of {{'zeros', 'reflect', 'replicate', 'circular'}}, "
                         f"but got padding_mode={padding_mode!r}")
    return padding, pads


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    im2col gives cols of shape (N, C*KH*KW, OH*OW) — one column per output
    position — and with W_mat = weight reshaped to (F, C*KH*KW):

        out    = W_mat @ cols + b                        (N, F, OH*OW)

    Backward, for an upstream gradient dout as a matrix (N, F, OH*OW):

        dW_mat = sum over n of dout[n] @ cols[n].T       (F, C*KH*KW)
        db     = dout summed over n and its columns      (F,)
        dcols  = W_mat.T @ dout                          (N, C*KH*KW, OH*OW)
        dx     = col2im(dcols)                           (N, C, H, W)

    (``conv2d_im2col`` and ``conv2d_backward``.) ``groups`` = G splits the
    channels into G independent convolutions (C/G inputs -> F/G outputs
    each; ResNeXt's "cardinality"; G = C is a depthwise convolution): the
    weight is (F, C/G, KH, KW) and each product becomes G products, one per
    group. ``dilation`` (DH, DW) spreads the kernel taps DH rows and DW
    columns apart.

    ``padding`` is PyTorch's: an int, a pair (PH, PW), "valid" (none) or
    "same" (stride 1: the output keeps the input's size; an even kernel
    pads one more row at the bottom and one more column on the right).
    ``padding_mode`` is "zeros" (the default), "reflect", "replicate" or
    "circular". Zero padding on both sides alike is part of im2col; any
    other padding is done first (``padding.pad``) and the convolution
    runs unpadded on the padded input, so its backward is the convolution's
    followed by ``padding.pad_backward``, which hands each copied pixel's
    gradient back to its source. An unbatched (C, H, W) input gives a
    (F, OH, OW) output, as in PyTorch.

    The fast path (``resnet_np.use_fast``, the default) computes the same
    in cache-sized chunks on every core, and at stride 1 may take dx as a
    convolution of dout with the flipped kernel (``resnet_np/fast/``).
    ``backward_route`` chooses its route: "col2im", "transposed" (stride 1
    only), "rows" (a "same" convolution at stride 1, kernel row by kernel
    row) or "auto" (the engine's choice). The plain path has one route,
    col2im.

    ``weight`` has PyTorch's shape (out_channels, in_channels/groups, KH, KW)
    and is initialised as torchvision's ResNet does (He normal, fan_out).
    The input and output are ordinary (N, C, H, W) arrays.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", backward_route="auto"):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "Conv2d")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.dilation = pair(dilation, "dilation", "Conv2d", 1)
        self.padding, self.pads = conv_padding(padding, self.kernel_size, self.stride, self.dilation, padding_mode)
        self.padding_mode = padding_mode
        top, bottom, left, right = self.pads
        # Zeros on both sides alike go to im2col (and the engine); any other padding is done before the convolution.
        self.pad_first = any(self.pads) and (padding_mode != "zeros" or top != bottom or left != right)
        self.im2col_padding = (0, 0) if self.pad_first else (top, left)
        self.groups = positive_int(groups, "groups", "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(init.kaiming_normal(shape, mode="fan_out"))
        fan_in, _ = init.fans(shape)
        self.bias = Parameter(init.uniform_fan_in((out_channels,), fan_in)) if bias else None
        self.backward_route = backward_route
        self._cache = None

    @property
    def backward_route(self):
        """How the fast path computes dx: "col2im", "transposed" (stride 1 only), "rows" (same, stride 1) or "auto"."""
        return self._backward_route

    @backward_route.setter
    def backward_route(self, route):
        if route not in BACKWARD_ROUTES:
            raise ValueError(f"Conv2d: backward_route must be one of {', '.join(BACKWARD_ROUTES)}, got {route!r}")
        if route == "transposed":
            transposed_conv.check_applies(self.kernel_size, self.stride, self.im2col_padding, self.dilation, "Conv2d")
        if route == "rows":
            row_taps.check_applies(self.kernel_size, self.stride, self.im2col_padding, self.dilation, self.groups,
                                   "Conv2d")
        self._backward_route = route

    def forward(self, x):
        """(N, C, H, W) -> (N, F, OH, OW), or unbatched (C, H, W) -> (F, OH, OW)."""
        self._cache = None
        unbatched = getattr(x, "ndim", None) == 3
        if unbatched:
            x = x[None]
        check_float_input(self, x, 4, "(N, C, H, W) or unbatched (C, H, W)", like=self.weight.data)
        check_dim(self, x, 1, self.in_channels, "input channels")
        check_not_empty_image(self, x)
        self._check_kernel_fits(x)
        if self.pad_first:
            check_padding_fits(x.shape, self.pads, self.padding_mode, layer_name(self))
            x = pad(x, self.pads, self.padding_mode)
        bias = self.bias.data if self.bias is not None else None
        args = (x, self.weight.data, bias, self.stride, self.im2col_padding, self.dilation, self.groups)
        out = fast_conv.conv2d_im2col(*args) if fast.fast_enabled() else conv2d_im2col(*args)
        if unbatched:
            out = out[0]
        self._cache = (x, out.shape)  # x as convolved (padded first where pad_first); the output's shape as given
        return out

    def _check_kernel_fits(self, x):
        H, W = x.shape[2:]
        (KH, KW), (DH, DW) = self.kernel_size, self.dilation
        top, bottom, left, right = self.pads
        if DH * (KH - 1) + 1 > H + top + bottom or DW * (KW - 1) + 1 > W + left + right:
            dilated = f" (dilated to {DH * (KH - 1) + 1}x{DW * (KW - 1) + 1})" if (DH, DW) != (1, 1) else ""
            padding = f"{top},{left}" if (top, left) == (bottom, right) else f"{top},{bottom},{left},{right}"
            raise ValueError(
                f"{layer_name(self)}: kernel {KH}x{KW}{dilated} is larger than the padded input "
                f"{H + top + bottom}x{W + left + right} (input {H}x{W}, padding {padding})"
            )

    def backward(self, dout, need_input_grad=True):
        """dx (None with ``need_input_grad=False``: the first layer, whose input is the images)."""
        check_forward_done(self, self._cache)
        x, out_shape = self._cache
        check_dout(self, dout, out_shape)
        unbatched = len(out_shape) == 3
        if unbatched:
            dout = dout[None]
        need_dw = self.weight.requires_grad
        args = (x, self.weight.data, dout, self.stride, self.im2col_padding, self.dilation, self.groups,
                need_input_grad, need_dw)
        if fast.fast_enabled():
            dx, dw = fast_conv.conv2d_backward(*args, route=self.backward_route)
        else:
            dx, dw = conv2d_backward(*args)
        if need_dw:
            self.weight.accumulate_grad(dw)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(dout.sum(axis=(0, 2, 3)))
        if dx is not None and self.pad_first:
            dx = pad_backward(dx, self.pads, self.padding_mode)   # the gradient of each copy back to its source
        return dx[0] if unbatched and dx is not None else dx

    def extra_repr(self):
        extra = ""
        if self.dilation != (1, 1):
            extra += f", dilation={self.dilation}"
        if self.groups != 1:
            extra += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            extra += f", padding_mode={self.padding_mode}"
        padding = repr(self.padding) if isinstance(self.padding, str) else self.padding
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={padding}{extra}, bias={self.bias is not None}")
