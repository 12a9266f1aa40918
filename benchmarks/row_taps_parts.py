"""Where the time of a 3x3 convolution goes in the engine: the shifted copies, the product, the additions.

    python benchmarks/row_taps_parts.py [--images 64] [--rounds 7]

The engine's route for a 3x3 "same" convolution (``resnet_np/fast/row_taps.py``)
does four things per chunk of images: it copies the images three times, each
copy shifted by one pixel (``Chunk.load``), multiplies the stacked kernel
rows by those copies (one matrix product), adds the product's three row
blocks, each shifted by an image row, and writes the result into the
(N, F, H, W) output. This script times each of them on ResNet-20's three
stages (16 channels at 32x32, 32 at 16x16, 64 at 8x8), one thread and BLAS
at one thread, the parts in alternating order round after round, medians —
and, for scale, one matrix product of a shape OpenBLAS runs near its best
here (192 x 192 times 192 x 8192). Rates count the convolution's own
multiply-adds (2*N*F*C*9*H*W floating-point operations): the product also
computes the rows dropped between images, so its real rate is a little
higher. Run it like the benchmark, without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.
"""

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np.fast import row_taps, threads  # noqa: E402

SHAPES = [(16, 32), (32, 16), (64, 8)]   # (channels in = channels out, image side): ResNet-20's stages
PARTS = ["copies", "product", "additions", "output write", "whole conv2d"]


def median(values):
    return float(np.median(values))


def parts_of(C, H, images, rng):
    """The five timed calls for C channels at H x H, over a multiple of the chunk size near ``images`` images."""
    F, W, KH = C, H, 3
    B = row_taps.images_per_chunk(images, C, H, W, (3, 3), 4)
    N = B * max(1, images // B)          # whole chunks only: every chunk does the same work
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    weight = rng.standard_normal((F, C, KH, 3), dtype=np.float32)
    w_rows = row_taps.kernel_rows(weight)
    chunk = row_taps.Chunk(np, C, B, H, W, (KH, 3), np.float32)
    L = B * (H + 1) * W
    span = L + (KH - 1) * W
    stacked = np.empty((KH * F, chunk.taps.shape[1]), dtype=np.float32)
    summed = np.empty((F, chunk.length), dtype=np.float32)
    out = np.empty((N, F, H, W), dtype=np.float32)
    starts = range(0, N, B)

    def copies():
        for n0 in starts:
            chunk.load(x[n0:n0 + B])

    def product():
        for _ in starts:
            np.matmul(w_rows.reshape(KH * F, -1), chunk.taps[:, :span], out=stacked[:, :span])

    def product_and_additions():
        for _ in starts:
            row_taps.sum_of_row_products(w_rows, chunk, B, summed[:, :L], stacked)

    def output_write():
        for n0 in starts:
            out[n0:n0 + B] = summed[:, :L].reshape(F, B, H + 1, W)[:, :, :H].transpose(1, 0, 2, 3)

    def whole():
        row_taps.conv2d(x, weight)

    chunk.load(x[:B])
    return N, B, {"copies": copies, "product": product, "product and additions": product_and_additions,
                  "output write": output_write, "whole conv2d": whole}


def measure(C, H, images, rounds, rng):
    """Medians in ms of each part over ``rounds`` alternating rounds; the additions are product+additions minus
    the product (the engine does them in one call)."""
    N, B, calls = parts_of(C, H, images, rng)
    times = {name: [] for name in calls}
    for r in range(rounds):
        names = list(calls) if r % 2 == 0 else list(calls)[::-1]
        for name in names:
            start = time.perf_counter()
            calls[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    ms = {name: median(values) for name, values in times.items()}
    ms["additions"] = max(0.0, ms.pop("product and additions") - ms["product"])
    return N, B, ms


def best_product_rate(rounds):
    """GFLOP/s of a product OpenBLAS runs near its best here: 192 x 192 times 192 x 8192."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((192, 192), dtype=np.float32)
    b = rng.standard_normal((192, 8192), dtype=np.float32)
    c = np.empty((192, 8192), dtype=np.float32)
    np.matmul(a, b, out=c)
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        seconds.append(time.perf_counter() - start)
    return 2 * 192 * 192 * 8192 / median(seconds) / 1e9


def conv_gflop(N, C, H):
    return 2 * N * C * C * 9 * H * H / 1e9


def report(rows, best, images, rounds):
    lines = ["# A 3x3 convolution's forward pass in the engine, part by part", "",
             f"`python benchmarks/row_taps_parts.py --images {images} --rounds {rounds}`; {describe()}; one thread, "
             "BLAS at one thread, float32, medians of alternating rounds (ms). Rates count the convolution's own "
             "multiply-adds.", "",
             "| layer | images | per chunk | " + " | ".join(PARTS) + " | product GFLOP/s | whole GFLOP/s |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in PARTS) + " | ---: | ---: |"]
    for (C, H), (N, B, ms) in rows:
        flop = conv_gflop(N, C, H)
        lines.append(f"| {C}->{C} @{H}x{H} | {N} | {B} | " + " | ".join(f"{ms[p]:.2f}" for p in PARTS)
                     + f" | {flop / ms['product'] * 1e3:.0f} | {flop / ms['whole conv2d'] * 1e3:.0f} |")
    lines += ["", f"For scale: a 192 x 192 times 192 x 8192 product ran at {best:.0f} GFLOP/s on the same thread."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="about how many images per call (default 64)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds, medians (default 7)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "results"
                                             / "row_taps_parts.md"))
    args = parser.parse_args(argv)
    if args.images < 1 or args.rounds < 1:
        parser.error("--images and --rounds must be at least 1")
    from threadpoolctl import threadpool_limits

    old = threads.get_num_threads()
    threads.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            rng = np.random.default_rng(0)
            rows = [((C, H), measure(C, H, args.images, args.rounds, rng)) for C, H in SHAPES]
            best = best_product_rate(args.rounds)
    finally:
        threads.set_num_threads(old)
    write_results(args.out, report(rows, best, args.images, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
