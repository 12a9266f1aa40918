"""col2im by strided slices over kernel offsets vs. the common np.add.at version.

The backward pass of every convolution runs col2im, so its cost matters. This
compares, at the shapes of ResNet-20's 3x3 convolutions (batch 128), the
project's col2im with the scatter-add version found in many tutorials.

    python benchmarks/bench_col2im.py [--repeat 5]
"""

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np.layers.im2col import col2im, conv_output_size  # noqa: E402


def col2im_add_at(cols, x_shape, kernel_size, stride, padding):
    """The tutorial version: one index array per pixel, scatter-added with np.add.at."""
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    i0 = np.repeat(np.arange(KH), KW)
    i0 = np.tile(i0, C)
    i1 = SH * np.repeat(np.arange(OH), OW)
    j0 = np.tile(np.arange(KW), KH * C)
    j1 = SW * np.tile(np.arange(OW), OH)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(C), KH * KW).reshape(-1, 1)
    x_pad = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    np.add.at(x_pad, (slice(None), k, i, j), cols)
    return x_pad[:, :, PH:PH + H, PW:PW + W]


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "col2im.md"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = []
    for C, H, stride in [(16, 32, 1), (32, 16, 1), (64, 8, 1), (16, 32, 2)]:
        shape = (args.batch, C, H, H)
        OH = conv_output_size(H, 3, stride, 1)
        cols = rng.standard_normal((args.batch, C * 9, OH * OH)).astype(np.float32)
        k, s, p = (3, 3), (stride, stride), (1, 1)
        ours = col2im(cols, shape, k, s, p)
        theirs = col2im_add_at(cols, shape, k, s, p)
        assert np.allclose(ours, theirs, atol=1e-4), "the two col2im versions disagree"
        t_ours = median_time(lambda: col2im(cols, shape, k, s, p), args.repeat)
        t_add_at = median_time(lambda: col2im_add_at(cols, shape, k, s, p), args.repeat)
        rows.append((f"{shape} k3 s{stride} p1", t_ours, t_add_at, t_add_at / t_ours))

    lines = [
        "# col2im: strided slices vs np.add.at",
        "",
        f"Machine: {describe()}",
        f"float32, median of {args.repeat} runs, measured side by side in one run.",
        "",
        "| input shape (N, C, H, W) | strided slices (ms) | np.add.at (ms) | add.at / slices |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {name} | {a * 1e3:.1f} | {b * 1e3:.1f} | {r:.1f}x |" for name, a, b, r in rows]
    text = "\n".join(lines) + "\n"
    write_results(args.out, text)


if __name__ == "__main__":
    from resnet_np.fast import tuned
    with tuned():  # training's process-wide settings, as fit has them
        main()
