"""Command line: python -m resnet_np {train,finetune,evaluate,predict,demo} ... (--help on each)."""

import argparse
import math
import os
import sys
import traceback

DESCRIPTION = ("Train, fine-tune, evaluate and use the residual networks of resnet_np, written from scratch on NumPy. "
               "Each command has its own --help.")

MODELS_HELP = ("resnet20/32/44/56/110/1202 and plain20/32/44/56/110 (CIFAR-style), preact_resnet20/110/164/1001, "
               "wrn16_4/16_8/28_10/40_4, resnext29_8x64d/16x64d; resnet18/34/50/101/152, plain18/34, "
               "resnext50_32x4d, resnext101_32x8d/64x4d, wide_resnet50_2/101_2 (ImageNet-style)")

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10")
DATASET_HELP = ("mnist, fashion-mnist, cifar10, or folder:PATH: your own images, one sub-folder per class "
                "(PATH/<class>/<image>.jpg), a fraction of each class held out to test on")

# Larger images than this are held in memory by the thousand: almost surely a typo.
MAX_IMAGE_SIZE = 1024


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose error is one line (what is wrong, where to read more) instead of usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------
# The values of options: each checked where it is parsed
# ----------------------------------------------------------------------------

def _whole_number(minimum, maximum=None):
    """A type= function: an integer in [minimum, maximum]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum:,}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"expected a whole number, at least {minimum}{upper}, got {text!r}")
        return value
    return parse


def _real_number(low, high=math.inf, low_included=True, high_included=False, example="0.1"):
    """A type= function: a finite float in the interval from low to high ("nan" and "inf" fail it)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value >= low if low_included else value > low
        below = value <= high if high_included else value < high
        if not (math.isfinite(value) and above and below):
            interval = (f"{'at least' if low_included else 'greater than'} {low:g}" if high == math.inf else
                        f"{'[' if low_included else '('}{low:g}, {high:g}{']' if high_included else ')'}")
            raise argparse.ArgumentTypeError(f"expected a number {'in ' if high != math.inf else ''}{interval}, "
                                             f"e.g. {example}, got {text!r}")
        return value
    return parse


count = _whole_number(1)
steps = _whole_number(0)
seed = _whole_number(0, 2**32 - 1)
image_size = _whole_number(1, MAX_IMAGE_SIZE)
rate = _real_number(0, low_included=False)               # a learning rate: > 0
rate_or_zero = _real_number(0)                           # a backbone's learning rate may be 0
factor = _real_number(0, 1, example="0.9")               # momentum, weight decay: [0, 1)
fraction = _real_number(0, 1, low_included=False, example="0.2")
smoothing = _real_number(0, 1, high_included=True, example="0.1")  # label smoothing: [0, 1], as PyTorch


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


def model_argument(text):
    """--model: the name of an architecture of resnet_np."""
    from .models import ARCHITECTURES
    if text not in ARCHITECTURES:
        raise argparse.ArgumentTypeError(f"unknown --model {text!r}; expected one of: "
                                         f"{', '.join(sorted(ARCHITECTURES))}")
    return text


def weights_argument(text):
    """--weights: the name of trained weights that ship with resnet_np."""
    from .models import pretrained
    if text not in {name for _, name in pretrained.names()}:
        known = ", ".join(f"--model {a} --weights {n}" for a, n in pretrained.names())
        raise argparse.ArgumentTypeError(f"no weights named {text!r} ship with resnet_np; what ships: {known}")
    return text


def classes_argument(text):
    """--classes: kept as written (it is recorded so), after checking that it reads."""
    from .finetune import parse_classes
    try:
        parse_classes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _shipped_help():
    from .models import pretrained
    return ", ".join(f"{name} ({arch})" for arch, name in pretrained.names())


# ----------------------------------------------------------------------------
# The options
# ----------------------------------------------------------------------------

class Settings:
    """The options of a command whose values a checkpoint records, with their defaults.

    Their argparse default is None, so that a value given on the command
    line can be told from the default (``train --resume`` refuses to change
    a recorded setting); ``defaults`` fills in the others after parsing.
    """

    def __init__(self, parser, title):
        self.group = parser.add_argument_group(title)
        self.defaults = {}
        parser.set_defaults(recorded=self.defaults)

    def add(self, *flags, default=None, help, **kwargs):
        shown = "" if default is None else f" (default: {default})"
        action = self.group.add_argument(*flags, default=None, help=help + shown, **kwargs)
        self.defaults[action.dest] = default


def _add_run_options(p, settings, epochs, warmup_steps, out_default):
    """The options train and finetune share, defined once; the per-command defaults are arguments."""
    settings.add("--dataset", default="mnist", type=dataset_argument, metavar="DATASET",
                 help=f"the images to learn: {DATASET_HELP}")
    settings.add("--image-size", type=image_size, metavar="N",
                 help="--dataset folder:PATH only: resize every image to N x N pixels, bilinear (default: 32)")
    settings.add("--val-fraction", type=fraction, metavar="F",
                 help="--dataset folder:PATH only: hold out this fraction of each class, drawn with --seed, to "
                      "test on (default: 0.2)")
    settings.add("--epochs", default=epochs, type=count, metavar="N", help="passes over the training set")
    settings.add("--batch-size", default=128, type=count, metavar="N", help="images per step")
    settings.add("--optimizer", default="sgd", choices=["sgd", "adam"],
                 help="sgd (momentum, as in the paper) or adam")
    settings.add("--momentum", default=0.9, type=factor, help="SGD momentum, in [0, 1)")
    settings.add("--weight-decay", default=5e-4, type=factor, help="L2 weight decay, in [0, 1)")
    settings.add("--label-smoothing", default=0.0, type=smoothing, metavar="EPS",
                 help="label smoothing of the cross-entropy, in [0, 1]: the target is (1 - EPS) x the one-hot "
                      "label + EPS / classes (0.1 is the usual value)")
    settings.add("--schedule", default="cosine", choices=["cosine", "multistep", "constant"],
                 help="learning-rate schedule over all steps: cosine decay, the paper's divide-by-10 at 50%% "
                      "and 75%% of training, or constant")
    settings.add("--warmup-steps", default=warmup_steps, type=steps, metavar="N",
                 help="steps of linear warm-up before the schedule, at most a quarter of the run's steps")
    settings.add("--augment", default="auto", choices=["auto", "none"],
                 help="auto: random crops for digits, crops and flips for CIFAR-10 and folders")
    settings.add("--train-size", type=count, metavar="N",
                 help="use only the first N training images (default: all), for quick runs")
    settings.add("--test-size", type=count, metavar="N",
                 help="test on only the first N test (or held-out) images each epoch (default: all)")
    settings.add("--seed", default=0, type=seed, metavar="N",
                 help="seed of the weights, the held-out split of a folder, the data order and augmentation")
    where = p.add_argument_group("where it runs (not recorded in the checkpoint)")
    _add_backend_option(where)
    _add_data_option(where)
    where.add_argument("--out", default=None, metavar="FOLDER",
                       help=f"folder for checkpoint.npz and curves.png (default: {out_default})")
    where.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    return where


def _add_backend_option(p):
    p.add_argument("--backend", choices=["numpy", "cupy", "cupy-strict"], default=None,
                   help="numpy (CPU) or cupy (GPU); cupy-strict: CuPy's rules emulated on NumPy, for tests, "
                        "not a GPU (default: $RESNET_NP_BACKEND or numpy)")


def _add_data_option(p):
    p.add_argument("--data", default=None, metavar="FOLDER",
                   help="where the named datasets are (default: $RESNET_NP_DATA or ~/.cache/resnet_np)")


def _add_train_parser(commands):
    p = commands.add_parser(
        "train", help="train a ResNet on MNIST, Fashion-MNIST, CIFAR-10 or a folder of your images",
        description="Train a ResNet from scratch. The model's input channels and number of classes follow "
                    "the dataset. A checkpoint and a plot of the curves are written to --out after every epoch.")
    settings = Settings(p, "settings of the run (recorded in its checkpoint)")
    settings.add("--model", default="resnet20", type=model_argument, metavar="MODEL",
                 help=f"architecture: {MODELS_HELP}")
    settings.add("--shortcut", choices=["A", "B"],
                 help="CIFAR-style models: shortcut option A (parameter-free, the default) or B (1x1 projection)")
    settings.add("--lr", type=rate, help="peak learning rate (default: 0.1 for sgd, 0.001 for adam)")
    where = _add_run_options(p, settings, epochs=1, warmup_steps=100, out_default="runs/<dataset>-<model>")
    where.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue an interrupted run: from CHECKPOINT, or from --out/checkpoint.npz if no path "
                            "is given; the run's settings come from the checkpoint (and cannot be changed)")
    where.add_argument("--distributed", action="store_true",
                       help="data parallelism on every process mpiexec started (mpiexec -n 2 python -m resnet_np "
                            "train --distributed): --batch-size stays the global batch, each rank takes "
                            "batch-size/ranks images of it; gradients averaged, batch norms synchronised; rank 0 "
                            "logs and writes the checkpoint, which resumes under any number of processes. Alone "
                            "it runs as one process")
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
    start.add_argument("--weights", metavar="NAME", type=weights_argument,
                       help=f"start from trained weights shipped with the package: {_shipped_help()}; the new "
                            "images are normalised as the weights' were")
    settings = Settings(p, "settings of the run (recorded in its checkpoint)")
    settings.add("--model", type=model_argument, metavar="MODEL",
                 help=f"architecture; required for a .pth, default for an .npz: the one it holds ({MODELS_HELP})")
    settings.add("--classes", type=classes_argument,
                 help="learn only these classes, relabelled 0, 1, ...: e.g. '5-9' or '1,3,5' (default: all)")
    settings.add("--train-per-class", type=count, metavar="N",
                 help="use only N training images of each class, drawn with --seed (default: all): "
                      "the few-label setting where fine-tuning pays off")
    settings.add("--freeze", default="backbone",
                 help="what not to train: 'backbone' (all but fc: a linear probe), 'none' (fine-tune "
                      "everything), or comma-separated glob patterns of parameter or module names such as "
                      "'conv1,bn1,layer1' or 'layer1.*'")
    settings.add("--frozen-bn", default="eval", choices=["eval", "train"],
                 help="batch norms whose parameters are all frozen: eval keeps their running statistics "
                      "fixed; train lets them follow the new data")
    settings.add("--head-lr", default=0.1, type=rate, help="learning rate of the new head")
    settings.add("--backbone-lr", type=rate_or_zero,
                 help="learning rate of the trainable part of the backbone (default: half of --head-lr, the "
                      "best of the lower rates in benchmarks/results/transfer.md; a tenth is the ImageNet habit)")
    _add_run_options(p, settings, epochs=5, warmup_steps=10, out_default="runs/finetune-<dataset>-<model>")
    return p


def _add_trained_network_options(p):
    """--checkpoint | --weights, and --model: the trained network that evaluate and predict use."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH",
                        help="a checkpoint.npz written by train or finetune, or a saved model")
    source.add_argument("--weights", metavar="NAME", type=weights_argument,
                        help=f"trained weights shipped with the package, by name: {_shipped_help()}")
    p.add_argument("--model", default=None, type=model_argument, metavar="MODEL",
                   help="with --weights: the architecture they belong to (default: the one that ships them)")


def _add_evaluate_parser(commands):
    p = commands.add_parser(
        "evaluate", help="accuracy and confusion matrix of a checkpoint or of shipped weights",
        description="Load a checkpoint (or a model file), or the trained weights that ship with resnet_np "
                    "(--weights cifar10), and print its accuracy on the test images (for a folder: the held-out "
                    "ones) and its confusion matrix; the matrix is also drawn as a figure.")
    _add_trained_network_options(p)
    p.add_argument("--dataset", default=None, type=dataset_argument, metavar="DATASET",
                   help="default: the dataset the checkpoint or weights were trained on, and for a folder the same "
                        f"held-out images ({DATASET_HELP})")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="where to draw the confusion matrix (default: confusion.png beside the checkpoint; for "
                        "--weights, runs/evaluate-<dataset>-<model>/confusion.png)")
    p.add_argument("--batch-size", type=count, default=500, metavar="N",
                   help="images per forward pass (default: 500)")
    _add_backend_option(p)
    _add_data_option(p)
    return p


def _add_predict_parser(commands):
    p = commands.add_parser(
        "predict", help="classify image files with a checkpoint or shipped weights",
        description="Classify each IMAGE (PNG, JPEG, ...): resized and normalised as the network's training images "
                    "were, and printed with its most probable classes.")
    _add_trained_network_options(p)
    p.add_argument("--top", type=count, default=3, metavar="K", help="how many classes to print per image "
                                                                     "(default: 3)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    _add_backend_option(p)
    _add_data_option(p)
    return p


def _add_demo_parser(commands):
    p = commands.add_parser("demo", help="build a small ResNet, gradient-check it, train a few steps")
    p.add_argument("--steps", type=count, default=150, metavar="N", help="training steps (default: 150)")
    p.add_argument("--batch-size", type=count, default=32, metavar="N", help="images per step (default: 32)")
    p.add_argument("--lr", type=rate, default=0.1, help="learning rate of plain SGD (default: 0.1)")
    p.add_argument("--seed", type=seed, default=0, metavar="N", help="seed of the weights and the images")
    _add_backend_option(p)
    return p


def build_parser():
    parser = ArgumentParser(prog="python -m resnet_np", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(commands)
    _add_finetune_parser(commands)
    _add_evaluate_parser(commands)
    _add_predict_parser(commands)
    _add_demo_parser(commands)
    return parser


# ----------------------------------------------------------------------------
# Running a command: a message for what the user can fix, a traceback only for a bug
# ----------------------------------------------------------------------------

def main(argv=None):
    """Run the command line ``argv``; returns the exit status (0 done, 1 failed, 2 bad arguments, 130 Ctrl-C)."""
    args = build_parser().parse_args(argv)  # bad arguments: one line and exit status 2
    if args.command == "train" and args.distributed:
        return _train_distributed(args)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- every exception ends here: a message, or a traceback for a bug
        return _report(e)


def _run(args):
    from . import backend
    if args.backend:
        backend.use(args.backend)
    # A diverging run's overflows are caught once per step and named by layer (TrainingDiverged):
    # NumPy's warnings about them, printed mid-progress-bar, would only bury that message.
    with backend.numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if args.command == "demo":
            from .demo import main as demo_main
            demo_main(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
            return 0
        from . import cli
        command = {"train": cli.train_command, "finetune": cli.finetune_command, "evaluate": cli.evaluate_command,
                   "predict": cli.predict_command}[args.command]
        return command(args)


def _report(error, where=""):
    """Print what went wrong; returns the exit status: 2 for a usage error, 1 for any other.

    What a user can fix gets one line: a ``UsageError`` (a bad combination
    of arguments), a file or disk problem (``OSError``), a diverged run,
    too little memory, a missing optional package (CuPy, PyTorch, mpi4py),
    and the ``ValueError`` or ``RuntimeError`` this library raises on
    purpose to name a bad file, value or setup. Anything else (and a
    ValueError raised inside NumPy or another library) is a bug of
    resnet_np: its traceback, and a request to report it. ``where`` names
    the rank of a distributed run ("rank 1 of 2: ").
    """
    from .cli import UsageError
    from .train import TrainingDiverged
    if isinstance(error, UsageError):
        print(f"error: {where}{error}", file=sys.stderr)
        return 2
    if isinstance(error, MemoryError):
        print(f"error: {where}out of memory ({error or 'no detail'}): lower --batch-size, or use fewer or "
              "smaller images", file=sys.stderr)
        return 1
    missing = isinstance(error, ModuleNotFoundError) and not (error.name or "").startswith("resnet_np")
    if (isinstance(error, (OSError, TrainingDiverged)) or missing
            or (isinstance(error, (ValueError, RuntimeError)) and _raised_here(error))):
        print(f"error: {where}{error}", file=sys.stderr)
        return 1
    traceback.print_exception(type(error), error, error.__traceback__)
    print(f"error: {where}{type(error).__name__}: {error}\n"
          "this is a bug in resnet_np, not a mistake of yours: please report it to the project's issue tracker, "
          "with the command you ran and the traceback above", file=sys.stderr)
    return 1


def _raised_here(error):
    """Whether ``error`` was raised by resnet_np's own code (on purpose, with a message), not inside a library."""
    package = os.path.dirname(os.path.abspath(__file__))
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(package + os.sep)


def _train_distributed(args):
    """``train --distributed``: on an error, name the rank and end every process of the job.

    A rank that returns while the others wait for it in a collective would
    leave them waiting forever: any failure, and Ctrl-C, ends in
    ``MPI_Abort``, which makes mpiexec stop the whole job with that status.
    """
    from . import distributed
    try:
        world = distributed.init()
    except (RuntimeError, ValueError) as e:  # no MPI started yet: a plain exit ends this process
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        status = _run(args)
    except KeyboardInterrupt:
        status = 130
    except Exception as e:  # noqa: BLE001 -- as in main, with the rank named
        status = _report(e, where=f"rank {world.rank} of {world.size}: ")
    if status and world.size > 1:
        world.abort(status, f"rank {world.rank} of {world.size} stopped with exit status {status}: "
                            "ending every rank")
    return status


if __name__ == "__main__":
    sys.exit(main())
