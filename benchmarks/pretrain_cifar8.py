"""Pretrain ResNet-20 on 8 of CIFAR-10's classes, cat and dog held out, for lesson 14.

Lesson 14 fine-tunes on a folder of cat and dog photos that the network
never saw, not even as a class: a network pretrained on the other eight
classes (airplane ... truck) is the "trained on a related task" starting
point. This script makes it: ResNet-20 (option A), SGD 0.1 with momentum
0.9, weight decay 5e-4, 100 warm-up steps then cosine decay, batch 128,
crops and flips, on the 40,000 training images of the eight classes; the
test accuracy is measured on their 8,000 test images. It writes a
resumable checkpoint after every epoch (run it again to continue) and, at
the end, the model alone (float32, about 1.1 MB) to
``resnet_np/pretrained/resnet20_cifar10_8classes.npz``, with the recipe and
accuracy in its metadata (put the MD5 it prints into
``resnet_np/models/pretrained.py``): the package ships it, so that the
lesson runs wherever resnet_np is installed.

    RESNET_NP_DATA=../shared/data python benchmarks/pretrain_cifar8.py [--epochs 15]
"""

import argparse
import hashlib
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_np import backend, finetune  # noqa: E402
from resnet_np.data import DataLoader, load_dataset  # noqa: E402
from resnet_np.models import resnet20, save  # noqa: E402
from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup  # noqa: E402
from resnet_np.train import evaluate, fit  # noqa: E402

HELD_OUT = (3, 5)  # cat, dog
PRETRAIN = tuple(c for c in range(10) if c not in HELD_OUT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "runs" / "cifar8-resnet20"))
    parser.add_argument("--weights", default=str(ROOT / "resnet_np" / "pretrained" / "resnet20_cifar10_8classes.npz"))
    args = parser.parse_args()

    train_all, test_all = load_dataset("cifar10", train=True), load_dataset("cifar10", train=False)
    train_set = finetune.select_classes(train_all, PRETRAIN)
    test_set = finetune.select_classes(test_all, PRETRAIN)
    print(f"pretraining on {len(train_set):,} images of {train_set.classes}; {len(test_set):,} test images")

    backend.manual_seed(0)
    model = resnet20(num_classes=len(PRETRAIN))
    loader = DataLoader(train_set, batch_size=128, shuffle=True, drop_last=True, seed=0, augment="cifar")
    steps = args.epochs * len(loader)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = LinearWarmup(optimizer, warmup_steps=100, start_factor=0.1,
                             after=CosineAnnealingLR(optimizer, T_max=steps - 100))
    checkpoint = os.path.join(args.out, "checkpoint.npz")
    resume = checkpoint if os.path.isfile(checkpoint) else None
    config = {"classes": list(PRETRAIN), "epochs": args.epochs}
    history = fit(model, loader, DataLoader(test_set, batch_size=500, shuffle=False), args.epochs, optimizer,
                  scheduler, out_dir=args.out, resume=resume, config=config, progress=False)
    if history.get("interrupted") or len(history["epoch"]) < args.epochs:
        return 130
    _, accuracy = evaluate(model, DataLoader(test_set, batch_size=500, shuffle=False))
    model.eval()
    recipe = (f"ResNet-20 (option A) on the CIFAR-10 training images of {len(PRETRAIN)} classes "
              f"(cat and dog held out), {args.epochs} epochs, SGD lr 0.1 momentum 0.9 weight decay 5e-4, "
              "batch 128, 100 warm-up steps then cosine decay, 4-pixel pad + random crop and horizontal flip, "
              "inputs normalised by the CIFAR-10 training mean/std")
    os.makedirs(os.path.dirname(args.weights), exist_ok=True)
    save(model, args.weights, extra_meta={"pretrained": {
        "dataset": "cifar10", "classes": [train_all.classes[c] for c in PRETRAIN],
        "mean": list(train_all.mean), "std": list(train_all.std),
        "held_out": [train_all.classes[c] for c in HELD_OUT], "recipe": recipe,
        "test_accuracy": round(float(accuracy), 4), "test_images": len(test_set),
        "training_time_s": round(sum(history["seconds"]))}})
    md5 = hashlib.md5(pathlib.Path(args.weights).read_bytes()).hexdigest()
    print(f"test accuracy on the 8 classes: {accuracy:.2%}; weights: {args.weights} (MD5 {md5})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
