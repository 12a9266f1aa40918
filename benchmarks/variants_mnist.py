"""After ResNet, on real data: ResNet-20 against its pre-activation, wide and ResNeXt variants on MNIST.

    python benchmarks/variants_mnist.py [--epochs 1] [--train-size 10000] [--quick]

Four CIFAR-style networks of about the same size (0.25-0.30M parameters,
31-34M multiply-adds per 28x28 image), each trained from its own seed-0
weights on the same random subset of the MNIST training images, in the same
order, with the same recipe:

* ``resnet20``: the paper's ResNet-20 (option-A shortcuts);
* ``preact_resnet20``: the same depth with pre-activation blocks;
* ``wrn(10, 2)``: WRN-10-2, shallower and twice as wide;
* ``cifar_resnext(20, 8, 16, base_planes=16)``: ResNeXt-20 8x16d with a
  16-channel stem, grouped bottlenecks.

Recipe: SGD with momentum 0.9, weight decay 5e-4, batch 64, learning rate
0.05 (the paper's 0.1 for 128, scaled) reached by a linear warm-up over the
first 10 % of the steps, then cosine decay to zero; no augmentation. Tested
on all 10,000 MNIST test images (``--test-size`` fewer). Times, wall and
CPU, are measured with the threads the environment gives (the results file
records them; ``OPENBLAS_NUM_THREADS=1 RESNET_NP_NUM_THREADS=1`` for one).

A few epochs on a subset measure how quickly each network starts to learn,
not how good it ends up: read the table as evidence that all four train,
at what cost, not as a ranking. Writes benchmarks/results/variants_mnist.md.
"""

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np import backend, fast  # noqa: E402
from resnet_np.data import DataLoader, load_dataset  # noqa: E402
from resnet_np.models import cifar_resnext, flops, preact_resnet20, resnet20, wrn  # noqa: E402
from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup  # noqa: E402
from resnet_np.train import evaluate, fit  # noqa: E402

# name -> constructor for 10 classes and 1 input channel.
NETWORKS = {
    "ResNet-20": lambda: resnet20(num_classes=10, in_channels=1),
    "pre-act ResNet-20": lambda: preact_resnet20(num_classes=10, in_channels=1),
    "WRN-10-2": lambda: wrn(10, 2, num_classes=10, in_channels=1),
    "ResNeXt-20 8x16d (base 16)": lambda: cifar_resnext(20, 8, 16, base_planes=16, num_classes=10, in_channels=1),
}


def blas_threads():
    from threadpoolctl import threadpool_info
    return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=10000, help="random MNIST training images (default 10000)")
    parser.add_argument("--test-size", type=int, default=10000, help="first MNIST test images (default all 10000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="512 training and 500 test images: a smoke test")
    parser.add_argument("--note", default="", help="a sentence added to the results file (say, a busy machine)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "variants_mnist.md"))
    args = parser.parse_args()
    if args.quick:
        args.train_size, args.test_size = 512, 500

    start_all = time.perf_counter()
    train = load_dataset("mnist", train=True)
    test = load_dataset("mnist", train=False)
    train = train.subset(np.random.default_rng(0).permutation(len(train))[:args.train_size])
    test = test.subset(range(min(args.test_size, len(test))))
    test_loader = DataLoader(test, batch_size=100, shuffle=False)

    rows = []
    for name, build in NETWORKS.items():
        backend.manual_seed(0)
        model = build()
        params = sum(p.size for p in model.parameters())
        macs = flops(model, (1, 1, 28, 28))
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=0)
        steps = args.epochs * len(loader)
        warmup = max(1, steps // 10)
        optimizer = SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        scheduler = LinearWarmup(optimizer, warmup_steps=warmup, start_factor=0.1,
                                 after=CosineAnnealingLR(optimizer, T_max=steps - warmup))
        cpu = time.process_time()
        history = fit(model, loader, None, args.epochs, optimizer, scheduler, progress=False, log=lambda *a: None)
        train_cpu = time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        _, test_acc = evaluate(model, test_loader)
        rows.append((name, params, macs, history["train_loss"][-1], history["train_acc"][-1], test_acc,
                     sum(history["seconds"]), train_cpu, time.perf_counter() - start, time.process_time() - cpu))
        print(f"{name}: test accuracy {test_acc:.2%}, training {sum(history['seconds']):.0f} s "
              f"({train_cpu:.0f} s of CPU)", flush=True)
    wall = time.perf_counter() - start_all

    lines = [
        "# After ResNet on MNIST: pre-activation, width and cardinality at about the same size", "",
        (f"Machine: {describe()}; NumPy backend; resnet_np threads: {fast.get_num_threads()}, "
         f"BLAS threads: {blas_threads()}."),
        (f"Training: {args.epochs} epoch(s) on {len(train):,} random MNIST training images (seed 0; the same images "
         f"in the same order for every network), batch {args.batch_size}, SGD momentum 0.9, weight decay 5e-4, "
         f"lr {args.lr:g} after a linear warm-up over 10 % of the steps, then cosine to 0; no augmentation. "
         f"Test: the first {len(test):,} MNIST test images. Whole run: {wall / 60:.1f} min. CPU time is this "
         f"process's (time.process_time): on a shared machine it moves less than the wall time."), "",
        ("| network | parameters | multiply-adds / image | train loss (last epoch) | train acc. | test acc. "
         "| training: wall (s) | training: CPU (s) | test pass: wall (s) | test pass: CPU (s) |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, params, macs, loss, train_acc, test_acc, seconds, cpu, test_seconds, test_cpu in rows:
        lines.append(f"| {name} | {params:,} | {macs / 1e6:.1f}M | {loss:.4f} | {train_acc:.2%} | {test_acc:.2%} | "
                     f"{seconds:.0f} | {cpu:.0f} | {test_seconds:.0f} | {test_cpu:.0f} |")
    lines += ["", args.note, ""] if args.note else [""]
    write_results(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
