"""Command line: ``python -m resnet_np {train,finetune,evaluate,demo} ...`` (``--help`` on each)."""

import argparse
import os
import sys

MODELS_HELP = ("resnet20/32/44/56/110/1202 and plain20/32/44/56/110 (CIFAR-style), preact_resnet20/110/164/1001, "
               "wrn16_4/16_8/28_10/40_4, resnext29_8x64d/16x64d; resnet18/34/50/101/152, plain18/34, "
               "resnext50_32x4d, resnext101_32x8d/64x4d, wide_resnet50_2/101_2 (ImageNet-style)")

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10")
DATASET_HELP = ("mnist, fashion-mnist, cifar10, or folder:PATH: your own images, one sub-folder per class "
                "(PATH/<class>/<image>.jpg), a fraction of each class held out as the test set")


def dataset_argument(text):
    """--dataset: one of DATASET_NAMES, or folder:PATH with PATH made absolute.

    Absolute, because the value is saved in the checkpoint, and ``evaluate``
    or ``--resume`` may run from another working directory.
    """
    if text in DATASET_NAMES:
        return text
    kind, colon, path = text.partition(":")
    if kind == "folder" and colon and path:
        return "folder:" + os.path.abspath(os.path.expanduser(path))
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}: expected {', '.join(DATASET_NAMES)} or "
                                     f"folder:PATH (a folder with one sub-folder of images per class)")


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, at least 1, got {text!r}")
    return int(text)


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:  # "nan" parses, and fails this test too
        raise argparse.ArgumentTypeError(f"expected a fraction strictly between 0 and 1, e.g. 0.2, got {text!r}")
    return value


def _add_folder_options(p):
    """--image-size and --val-fraction: what a folder of images needs and the named datasets have built in."""
    p.add_argument("--image-size", type=_positive_int, default=None, metavar="N",
                   help="--dataset folder:PATH only: resize every image to N x N pixels (bilinear) (default: 32)")
    p.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                   help="--dataset folder:PATH only: hold out this fraction of each class, drawn with --seed, as "
                        "the test set (default: 0.2)")


def _add_train_parser(commands):
    p = commands.add_parser(
        "train", help="train a ResNet on MNIST, Fashion-MNIST, CIFAR-10 or a folder of your images",
        description="Train a ResNet from scratch. The model's input channels and number of classes follow "
                    "the dataset. A checkpoint and a plot of the curves are written to --out after every epoch.")
    p.add_argument("--dataset", default="mnist", type=dataset_argument, metavar="DATASET",
                   help=f"dataset to train on: {DATASET_HELP} (default: mnist)")
    _add_folder_options(p)
    p.add_argument("--model", default="resnet20", help=f"architecture (default: resnet20): {MODELS_HELP}")
    p.add_argument("--shortcut", default=None, choices=["A", "B"],
                   help="CIFAR-style models: shortcut option A (parameter-free, default) or B (1x1 projection)")
    p.add_argument("--epochs", type=int, default=1,
                   help="passes over the training set (default: 1, about 99%% on MNIST; 8 gave 99.66%%)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                   help="sgd (momentum 0.9, as in the paper) or adam (default: sgd)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.1 for sgd, 0.001 for adam)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (default: 5e-4)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "multistep", "constant"],
                   help="learning-rate schedule over all steps: cosine decay, the paper's divide-by-10 at 50%% "
                        "and 75%% of training, or constant (default: cosine)")
    p.add_argument("--warmup-steps", type=int, default=100,
                   help="steps of linear warm-up before the schedule (default: 100)")
    p.add_argument("--augment", default="auto", choices=["auto", "none"],
                   help="auto: random crops for digits, crops and flips for CIFAR-10 and folders (default: auto)")
    p.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training images (default: all), for quick runs")
    p.add_argument("--test-size", type=int, default=None,
                   help="evaluate on only the first N test images each epoch (default: all 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and augmentation")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="numpy (CPU) or cupy (GPU) (default: $RESNET_NP_BACKEND or numpy)")
    p.add_argument("--data", default=None, help="dataset folder (default: $RESNET_NP_DATA or ~/.cache/resnet_np)")
    p.add_argument("--out", default=None, help="folder for checkpoint.npz and curves.png "
                                               "(default: runs/<dataset>-<model>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue an interrupted run: from CHECKPOINT, or from --out/checkpoint.npz if no path "
                        "is given; the run's settings come from the checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallelism on every process mpiexec started (mpiexec -n 2 python -m resnet_np train "
                        "--distributed): --batch-size stays the global batch, each rank takes batch-size/ranks "
                        "images of it; gradients averaged, batch norms synchronised; rank 0 logs and writes the "
                        "checkpoint, which resumes under any number of processes. Alone it runs as one process")
    return p


def _add_finetune_parser(commands):
    p = commands.add_parser(
        "finetune", help="start from trained weights: new head, frozen or slower backbone",
        description="Transfer learning: load every weight of a checkpoint except its classifier (fc), give "
                    "the network a new head sized for the dataset (and --classes), freeze what --freeze names "
                    "and train the rest, the head at --head-lr and the backbone at --backbone-lr. A checkpoint "
                    "and a plot of the curves are written to --out after every epoch; evaluate reads them.")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--from", dest="source", metavar="CHECKPOINT",
                       help="the starting point: a resnet_np .npz (a model file or a training checkpoint) or a "
                            "torchvision-format .pth/.pt state dict (needs torch and --model), e.g. ImageNet weights")
    start.add_argument("--weights", metavar="NAME",
                       help="start from trained weights shipped with the package: cifar10 (ResNet-20 trained on "
                            "CIFAR-10); the new images are normalised as CIFAR-10's were")
    p.add_argument("--dataset", default="mnist", type=dataset_argument, metavar="DATASET",
                   help=f"dataset of the new task: {DATASET_HELP} (default: mnist)")
    _add_folder_options(p)
    p.add_argument("--classes", default=None,
                   help="learn only these classes, relabelled 0, 1, ...: e.g. '5-9' or '1,3,5' (default: all)")
    p.add_argument("--train-per-class", type=int, default=None,
                   help="use only N training images of each class, drawn with --seed (default: all): "
                        "the few-label setting where fine-tuning pays off")
    p.add_argument("--model", default=None,
                   help=f"architecture; required for a .pth, default for an .npz: the one it holds ({MODELS_HELP})")
    p.add_argument("--freeze", default="backbone",
                   help="what not to train: 'backbone' (all but fc: a linear probe, the default), 'none' "
                        "(fine-tune everything), or comma-separated glob patterns of parameter or module "
                        "names such as 'conv1,bn1,layer1' or 'layer1.*'")
    p.add_argument("--frozen-bn", default="eval", choices=["eval", "train"],
                   help="batch norms whose parameters are all frozen: eval keeps their running statistics "
                        "fixed (default); train lets them follow the new data")
    p.add_argument("--head-lr", type=float, default=0.1, help="learning rate of the new head (default: 0.1)")
    p.add_argument("--backbone-lr", type=float, default=None,
                   help="learning rate of the trainable part of the backbone (default: half of --head-lr, the "
                        "best of the lower rates in benchmarks/results/transfer.md; a tenth is the ImageNet habit)")
    p.add_argument("--epochs", type=int, default=5,
                   help="passes over the training set (default: 5; with a few images per class use many, "
                        "e.g. 100 for 10 per class)")
    p.add_argument("--batch-size", type=int, default=128,
                   help="images per step, at most the training set (default: 128)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"], help="sgd (momentum) or adam (default: sgd)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (default: 5e-4)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "multistep", "constant"],
                   help="learning-rate schedule over all steps (default: cosine)")
    p.add_argument("--warmup-steps", type=int, default=10,
                   help="steps of linear warm-up before the schedule (default: 10)")
    p.add_argument("--augment", default="auto", choices=["auto", "none"],
                   help="auto: random crops for digits, crops and flips for CIFAR-10 and folders (default: auto)")
    p.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training images (after --classes/--train-per-class)")
    p.add_argument("--test-size", type=int, default=None,
                   help="evaluate on only the first N test images (after --classes) each epoch")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the new head, the draw of --train-per-class, the data order and augmentation")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="numpy (CPU) or cupy (GPU) (default: $RESNET_NP_BACKEND or numpy)")
    p.add_argument("--data", default=None, help="dataset folder (default: $RESNET_NP_DATA or ~/.cache/resnet_np)")
    p.add_argument("--out", default=None, help="folder for checkpoint.npz and curves.png "
                                               "(default: runs/finetune-<dataset>-<model>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    return p


def _add_evaluate_parser(commands):
    p = commands.add_parser(
        "evaluate", help="test accuracy and confusion matrix of a checkpoint or of shipped weights",
        description="Load a checkpoint (or a model file), or the trained weights that ship with resnet_np "
                    "(--model resnet20 --weights cifar10), and print its test accuracy and confusion matrix; "
                    "the matrix is also drawn as a figure.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint.npz written by train or finetune, or a saved model")
    source.add_argument("--weights", metavar="NAME",
                        help="trained weights shipped with the package, by name: cifar10 (ResNet-20 on CIFAR-10)")
    p.add_argument("--model", default=None,
                   help="with --weights: the architecture they belong to (default: the one that ships them)")
    p.add_argument("--dataset", default=None, type=dataset_argument, metavar="DATASET",
                   help="default: the dataset the checkpoint or weights were trained on, and for a folder the same "
                        f"held-out images ({DATASET_HELP})")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="where to draw the confusion matrix (default: confusion.png beside the checkpoint; for "
                        "--weights, runs/evaluate-<dataset>-<model>/confusion.png)")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default: 500)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None)
    p.add_argument("--data", default=None, help="dataset folder (default: $RESNET_NP_DATA or ~/.cache/resnet_np)")
    return p


def _add_demo_parser(commands):
    p = commands.add_parser("demo", help="build a small ResNet, gradient-check it, train a few steps")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="default: $RESNET_NP_BACKEND or numpy")
    return p


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m resnet_np", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands)
    _add_finetune_parser(commands)
    _add_evaluate_parser(commands)
    _add_demo_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from . import backend
    if args.backend:
        backend.use(args.backend)
    if args.command == "demo":
        from .demo import main as demo_main
        demo_main(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        return 0
    from .cli import evaluate_command, finetune_command, train_command
    from .train import TrainingDiverged
    if args.command == "train" and args.distributed:
        return _train_distributed(args)
    try:
        if args.command == "train":
            return train_command(args)
        if args.command == "finetune":
            return finetune_command(args)
        return evaluate_command(args)
    except (ValueError, FileNotFoundError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _train_distributed(args):
    """``train --distributed``: on an error, name the rank and end every process of the job.

    A rank that returns while the others wait for it in a collective would
    leave them waiting forever: any failure, and Ctrl-C, ends in
    ``MPI_Abort``, which makes mpiexec stop the whole job with that status.
    """
    from . import distributed
    from .cli import train_command
    from .train import TrainingDiverged
    try:
        world = distributed.init()
    except (RuntimeError, ValueError) as e:  # no MPI started yet: a plain exit ends this process
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        status = train_command(args)
    except (ValueError, FileNotFoundError, TrainingDiverged) as e:
        print(f"error (rank {world.rank} of {world.size}): {e}", file=sys.stderr)
        status = 1
    if status and world.size > 1:
        world.abort(status, f"rank {world.rank} of {world.size} stopped with exit status {status}: "
                            "ending every rank")
    return status


if __name__ == "__main__":
    sys.exit(main())
