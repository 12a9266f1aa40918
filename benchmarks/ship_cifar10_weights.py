"""Turn a finished CIFAR-10 run (ResNet-20 or ResNet-56) into the weights the package ships, and report the result.

    RESNET_NP_DATA=../shared/data python benchmarks/ship_cifar10_weights.py [--model resnet56 --checkpoint PATH]

Reads the run's checkpoint (by default ``benchmarks/runs/cifar10-<model>/checkpoint.npz``,
written by ``python -m resnet_np train``), measures the network on the
10,000 CIFAR-10 test images in eval mode, and writes:

- ``resnet_np/pretrained/<model>_cifar10.npz``: the model alone, float32,
  with the recipe, epochs, training time and accuracies in its metadata
  (what ``resnet20(weights="cifar10")`` or ``resnet56(...)`` loads; paste the printed MD5 into
  ``resnet_np/models/pretrained.py``);
- ``benchmarks/results/cifar10_<model>.md``: recipe, per-epoch table, result;
- ``benchmarks/results/cifar10_<model>_curves.png`` (the run's own, from beside its checkpoint) and
  ``..._confusion.png``.
"""

import argparse
import hashlib
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np.checkpoint import load_checkpoint  # noqa: E402
from resnet_np.confusion import confusion_matrix, format_matrix, predict, save_confusion_figure  # noqa: E402
from resnet_np.data import DataLoader, load_dataset  # noqa: E402
from resnet_np.models import save  # noqa: E402

RUNS = ROOT / "benchmarks" / "runs"
RESULTS = ROOT / "benchmarks" / "results"
# He et al. 2016, Table 6: ResNet-20 8.75 % error, ResNet-56 6.97 %.
PAPER = {"resnet20": ("ResNet-20", 0.9125), "resnet56": ("ResNet-56", 0.9303)}


def recipe_of(name, config):
    return (f"{name} (shortcut option {config['shortcut']}), SGD lr {config['lr']:g} momentum "
            f"{config['momentum']:g} weight decay {config['weight_decay']:g}, batch {config['batch_size']}, "
            f"{config['warmup_steps']} steps of linear warm-up then {config['schedule']} decay over "
            f"{config['epochs']} epochs, 4-pixel pad + random 32x32 crop and horizontal flip, inputs scaled to "
            "[0, 1] and normalised by the training mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616), "
            f"seed {config['seed']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PAPER), default="resnet20")
    parser.add_argument("--checkpoint", default=None, help="default: benchmarks/runs/cifar10-MODEL/checkpoint.npz")
    parser.add_argument("--out", default=None, help="default: resnet_np/pretrained/MODEL_cifar10.npz")
    args = parser.parse_args()
    arch = args.model
    name, paper_accuracy = PAPER[arch]
    checkpoint = pathlib.Path(args.checkpoint or RUNS / f"cifar10-{arch}" / "checkpoint.npz")
    args.out = args.out or str(ROOT / "resnet_np" / "pretrained" / f"{arch}_cifar10.npz")

    state = load_checkpoint(checkpoint)
    model, history, config = state.model, state.history, state.config
    if getattr(model, "arch", None) != arch:
        sys.exit(f"{checkpoint} holds a {getattr(model, 'arch', 'network')}, not a {arch}: pass --model")
    if state.epoch < config["epochs"]:
        print(f"warning: the run stopped after epoch {state.epoch} of {config['epochs']}")
    test = load_dataset("cifar10", train=False)
    labels, predictions, _ = predict(model, DataLoader(test, batch_size=500, shuffle=False))
    matrix = confusion_matrix(labels, predictions, 10)
    accuracy = float(matrix.trace() / matrix.sum())
    train_seconds = sum(history["seconds"])
    model.eval()
    recipe = recipe_of(name, config)
    meta = {"dataset": "cifar10", "classes": list(test.classes), "mean": list(test.mean), "std": list(test.std),
            "input": "float32 (N, 3, 32, 32), pixels scaled to [0, 1] then normalised per channel by mean and std",
            "recipe": recipe, "epochs": state.epoch, "schedule_epochs": config["epochs"],
            # False for an interim file, taken from a run still under way (the tests then expect less of it).
            "complete": state.epoch >= config["epochs"], "test_accuracy": round(accuracy, 4),
            "final_train_accuracy_augmented": round(float(history["train_acc"][-1]), 4),
            "training_time_s": round(train_seconds), "trained_with": "python -m resnet_np train (numpy, 2 threads)"}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save(model, args.out, extra_meta={"pretrained": meta})
    md5 = hashlib.md5(pathlib.Path(args.out).read_bytes()).hexdigest()
    print(f"test accuracy {accuracy:.2%}; wrote {args.out} ({pathlib.Path(args.out).stat().st_size:,} bytes, "
          f"MD5 {md5}): put this MD5 into resnet_np/models/pretrained.py")

    shutil.copyfile(checkpoint.parent / "curves.png", RESULTS / f"cifar10_{arch}_curves.png")
    save_confusion_figure(matrix, test.classes, RESULTS / f"cifar10_{arch}_confusion.png",
                          title=f"{name} on the CIFAR-10 test set: {accuracy:.2%}")
    rows = "\n".join(f"| {e} | {tl:.4f} | {ta:.2%} | {vl:.4f} | {va:.2%} | {lr:.4f} | {s:.0f} |"
                     for e, tl, ta, vl, va, lr, s in zip(history["epoch"], history["train_loss"], history["train_acc"],
                                                         history["val_loss"], history["val_acc"], history["lr"],
                                                         history["seconds"]))
    if state.epoch < config["epochs"]:
        title = (f"# CIFAR-10, {name}: the run toward the paper's result "
                 f"(interim: epoch {state.epoch} of {config['epochs']})")
        verdict = (f"the run is not finished: these are the figures of its checkpoint after epoch {state.epoch} of "
                   f"{config['epochs']}, with the learning rate still at {history['lr'][-1]:.4f} of its cosine")
    else:
        title = f"# CIFAR-10, {name}: the paper's result reproduced by resnet_np"
        verdict = "this run " + ("reaches it" if accuracy >= paper_accuracy else "falls short of it")
    text = f"""{title}

**Test accuracy {accuracy:.2%}** (error {1 - accuracy:.2%}) on the 10,000 CIFAR-10 test images, eval mode; the paper
(He et al. 2016, Table 6) reports {1 - paper_accuracy:.2%} error ({paper_accuracy:.2%}) for {name}: {verdict}.

- Recipe: {recipe}.
- {state.epoch} epochs of 390 steps; training time {train_seconds / 3600:.2f} h (sum of the epochs' times, test-set
  evaluation excluded; the run went in pieces, resumed from its checkpoint with `--resume`).
- Final training accuracy (on augmented batches, train mode): {history['train_acc'][-1]:.2%}.
- Shipped as `resnet_np/pretrained/{arch}_cifar10.npz` ({pathlib.Path(args.out).stat().st_size:,} bytes, MD5
  `{md5}`): `resnet_np.models.{arch}(weights="cifar10")`;
  `python -m resnet_np evaluate --model {arch} --weights cifar10 --dataset cifar10` prints it and this
  matrix.
- Curves: `cifar10_{arch}_curves.png`; confusion matrix: `cifar10_{arch}_confusion.png`.
- Machine: {describe()}

## Confusion matrix (rows: true class, columns: predicted)

```
{format_matrix(matrix, test.classes)}
```

## Per epoch (validation = the test set, evaluated after each epoch)

| epoch | train loss | train acc | test loss | test acc | lr at the end | seconds |
|---|---|---|---|---|---|---|
{rows}
"""
    write_results(RESULTS / f"cifar10_{arch}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
