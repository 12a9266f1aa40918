"""What ``python -m resnet_np train``, ``finetune`` and ``evaluate`` do, once the arguments are parsed."""

import os

from . import backend, distributed, finetune
from .checkpoint import read_training_config
from .confusion import confusion_matrix, format_matrix, predict, save_confusion_figure
from .data import DataLoader, Dataset, ImageFolder, load_dataset, split_per_class
from .data.loader import DistributedSampler
from .models import ARCHITECTURES, pretrained, weights
from .models import load as load_model
from .optim import SGD, Adam, CosineAnnealingLR, LinearWarmup, MultiStepLR
from .train import fit

# Random crops for everything; horizontal flips only where a mirror image is
# still the same class (a mirrored "3" is not a digit).
AUGMENTATION = {"mnist": "digits", "fashion-mnist": "digits", "cifar10": "cifar"}

# A folder of your own images (--dataset folder:PATH): resized to IMAGE_SIZE x IMAGE_SIZE, and
# VAL_FRACTION of each class held out as its test set, since a folder has no official one.
FOLDER = "folder:"
IMAGE_SIZE = 32
VAL_FRACTION = 0.2

CIFAR_RESNETS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")

SETTINGS = ("dataset", "model", "shortcut", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
            "schedule", "warmup_steps", "augment", "train_size", "test_size", "seed", "image_size", "val_fraction")


def build_model(name, num_classes, in_channels, shortcut=None):
    """The architecture ``name``, sized for the dataset."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown --model {name!r}; expected one of: {', '.join(sorted(ARCHITECTURES))}")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if shortcut is not None:
        if name not in CIFAR_RESNETS:
            raise ValueError(f"--shortcut applies to the CIFAR-style resnets, not to {name}")
        kwargs["shortcut"] = shortcut
    return ARCHITECTURES[name](**kwargs)


def build_optimizer(settings, parameters):
    if settings["optimizer"] == "sgd":
        return SGD(parameters, lr=settings["lr"], momentum=settings["momentum"],
                   weight_decay=settings["weight_decay"])
    return Adam(parameters, lr=settings["lr"], weight_decay=settings["weight_decay"])


def build_scheduler(settings, optimizer, total_steps):
    """Linear warm-up, then cosine decay, the paper's steps (/10 at 50% and 75%), or a constant rate."""
    warmup = min(settings["warmup_steps"], max(total_steps - 1, 0))
    remaining = max(total_steps - warmup, 1)
    if settings["schedule"] == "cosine":
        after = CosineAnnealingLR(optimizer, T_max=remaining)
    elif settings["schedule"] == "multistep":
        after = MultiStepLR(optimizer, milestones=[remaining // 2, (3 * remaining) // 4], gamma=0.1)
    else:
        after = None
    return LinearWarmup(optimizer, warmup_steps=max(warmup, 1), start_factor=0.1, after=after)


def folder_of(dataset):
    """The path of a ``folder:PATH`` dataset; None for a named one (mnist, ...)."""
    return dataset[len(FOLDER):] if dataset.startswith(FOLDER) else None


def _folder_options(settings):
    """Fill in the defaults of --image-size and --val-fraction for a folder; refuse them for a named dataset.

    A named dataset has its own image size and its own test set, so the two
    options would silently do nothing there: better to say so.
    """
    if folder_of(settings["dataset"]) is None:
        given = [option for option, key in (("--image-size", "image_size"), ("--val-fraction", "val_fraction"))
                 if settings[key] is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to --dataset "
                             f"folder:PATH only; {settings['dataset']} has its own image size and test set")
        return
    if settings["image_size"] is None:
        settings["image_size"] = IMAGE_SIZE
    if settings["val_fraction"] is None:
        settings["val_fraction"] = VAL_FRACTION


def load_splits(settings, root, train=True):
    """(training set, test set) of ``settings["dataset"]``; the training set is None unless ``train``.

    A named dataset is read from its official files under ``root``, with its
    official test split. A folder of images (``folder:PATH``) has no test
    split, so ``val_fraction`` of every class, drawn with ``seed``, is held
    out and serves as one, after every image was resized to ``image_size``
    squared. The same settings and the same folder give the same split
    again: ``--resume`` and ``evaluate`` rely on that (the settings travel in
    the checkpoint; the folder must not change in between).
    """
    path = folder_of(settings["dataset"])
    if path is None:
        train_set = load_dataset(settings["dataset"], root=root, train=True) if train else None
        test_set = load_dataset(settings["dataset"], root=root, train=False)
    else:
        size = settings.get("image_size") or IMAGE_SIZE  # .get: checkpoints from before these options
        images = ImageFolder(path).to_dataset(size=size, name=settings["dataset"])
        train_set, test_set = split_per_class(images, settings.get("val_fraction") or VAL_FRACTION,
                                              seed=settings.get("seed", 0))
        if not len(test_set):
            raise ValueError(f"{path}: no class has two images, so none can be held out to test on: add images")
    if settings.get("mean") is not None:  # starting from trained weights: their normalisation, not the data's
        train_set = _normalised(train_set, settings) if train else None
        test_set = _normalised(test_set, settings)
    return (train_set if train else None), test_set


def normalisation_of(meta):
    """The (mean, std) that the shipped weights of ``meta`` were trained with, or None if it records none."""
    recorded = meta.get("pretrained") or {}
    if recorded.get("mean") is None or recorded.get("std") is None:
        return None
    return list(recorded["mean"]), list(recorded["std"])


def _normalised(dataset, settings):
    """``dataset`` normalised by ``settings["mean"]`` and ``["std"]``, the inputs the weights were trained on.

    A network trained on inputs normalised one way sees differently
    normalised ones as shifted and rescaled: new images must go through the
    same normalisation, not one computed from themselves.
    """
    mean, std = tuple(settings["mean"]), tuple(settings["std"])
    if len(mean) != dataset.images.shape[1]:
        raise ValueError(f"the weights expect {len(mean)}-channel images, but {settings['dataset']} has "
                         f"{dataset.images.shape[1]} channel(s)")
    return Dataset(dataset.images, dataset.labels, dataset.classes, mean, std, name=dataset.name)


def _augmentation(settings):
    """The recipe of --augment auto: the dataset's own, or "cifar" (crops and flips) for a folder of photos."""
    if settings["augment"] != "auto":
        return None
    if folder_of(settings["dataset"]) is not None:
        return "cifar"  # photos, like CIFAR-10's: a mirror image shows the same class (else --augment none)
    return AUGMENTATION[settings["dataset"]]


def _test_images(dataset):
    """How the test images of ``dataset`` are called in the messages."""
    return f"{dataset} test images" if folder_of(dataset) is None else f"held-out images of {dataset}"


def _settings_from_args(args):
    settings = {name: getattr(args, name) for name in SETTINGS}
    if settings["lr"] is None:
        settings["lr"] = 0.1 if settings["optimizer"] == "sgd" else 1e-3
    _folder_options(settings)
    return settings


def _silent(*args, **kwargs):
    """What ranks other than 0 print."""


def train_command(args):
    """Train (``--distributed``: on every rank mpiexec started, rank 0 printing and writing)."""
    world = distributed.init() if getattr(args, "distributed", False) else None
    if world is None:
        distributed.check_not_launched("train")
    elif backend.current() == "cupy":
        distributed.use_local_gpu(world)  # before any array is made on the GPU
    say = print if world is None or world.is_main else _silent
    out = args.out
    resume = None
    if args.resume:
        resume = args.resume if isinstance(args.resume, str) else os.path.join(
            out or _default_out(args.dataset, args.model), "checkpoint.npz")
        settings = read_training_config(resume)
        if not settings:
            raise ValueError(f"{resume} does not record the settings of its run; cannot resume it")
        if settings.get("command") == "finetune":
            raise ValueError(f"{resume} was written by finetune, which cannot be resumed: run finetune again "
                             f"(its weights load with --from {resume})")
        out = out or os.path.dirname(os.path.abspath(resume))
        say(f"resuming {resume}: {settings}")
    else:
        settings = _settings_from_args(args)
    out = out or _default_out(settings["dataset"], settings["model"])
    if settings["model"] not in ARCHITECTURES:  # before the data is loaded: fail fast
        build_model(settings["model"], 10, 1)
    # --batch-size is the global batch: the optimizer's, whatever the number of ranks.
    batch_size = settings["batch_size"]
    if world is not None:
        batch_size = distributed.check_batch_size(batch_size, world)  # each rank's share of it

    if world is not None and not world.is_main:
        world.barrier()  # rank 0 reads (and if need be downloads) the data first, alone
    train_set, test_set = load_splits(settings, args.data)
    if world is not None and world.is_main:
        world.barrier()
    if settings["train_size"]:
        train_set = train_set.subset(range(min(settings["train_size"], len(train_set))))
    if settings.get("test_size"):
        test_set = test_set.subset(range(min(settings["test_size"], len(test_set))))
    in_channels, num_classes = train_set.images.shape[1], train_set.num_classes

    backend.manual_seed(settings["seed"])
    model = build_model(settings["model"], num_classes, in_channels, settings["shortcut"])
    model.need_input_grad = False  # nobody uses the gradient of the images: the first convolution skips it
    augment = _augmentation(settings)
    train_sampler = test_sampler = None
    if world is not None:
        model = distributed.DistributedDataParallel(distributed.convert_sync_batchnorm(model, world), world)
        train_sampler = DistributedSampler(world.size, world.rank, drop_last=True)
        test_sampler = DistributedSampler(world.size, world.rank, pad=False)  # each test image counted once
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                              seed=settings["seed"], augment=augment, sampler=train_sampler)
    test_loader = DataLoader(test_set, batch_size=500, shuffle=False, sampler=test_sampler)
    if world is not None and len(train_loader) == 0:
        raise ValueError(f"each of the {world.size} ranks gets {train_sampler.share_length(len(train_set))} training "
                         f"images, fewer than its share of the batch ({batch_size}): lower --batch-size")
    optimizer = build_optimizer(settings, model.parameters())
    scheduler = build_scheduler(settings, optimizer, settings["epochs"] * len(train_loader))

    n_params = sum(p.size for p in model.parameters())
    say(f"training {settings['model']} ({n_params:,} parameters) on {settings['dataset']}: "
        f"{len(train_set):,} images, {settings['epochs']} epoch(s) of {len(train_loader)} steps, "
        f"{settings['optimizer']} lr {settings['lr']:g}, {settings['schedule']} schedule, "
        f"backend {backend.current()}; writing to {out}")
    if world is not None:
        ranks = distributed.describe_ranks(world)  # every rank takes part
        say(f"distributed: {world.size} process(es), {batch_size} images of each batch of {settings['batch_size']} "
            f"per rank, batch norms synchronised ({ranks})", flush=True)
    history = fit(model, train_loader, test_loader, settings["epochs"], optimizer, scheduler, out_dir=out,
                  resume=resume, config=settings, progress=not args.no_progress, world=world)
    if history.get("val_acc"):
        say(f"test accuracy: {history['val_acc'][-1]:.2%}")
    say(f"checkpoint: {os.path.join(out, 'checkpoint.npz')}\ncurves: {os.path.join(out, 'curves.png')}")
    return 130 if history.get("interrupted") else 0


def _default_out(dataset, model, prefix=""):
    """runs/<dataset>-<model>; for folder:PATH, runs/folder-<the folder's name>-<model>."""
    path = folder_of(dataset)
    if path is not None:
        dataset = "folder-" + os.path.basename(os.path.normpath(path))
    return os.path.join("runs", f"{prefix}{dataset}-{model}")


FINETUNE_SETTINGS = ("dataset", "classes", "train_per_class", "model", "freeze", "frozen_bn", "head_lr",
                     "backbone_lr", "epochs", "batch_size", "optimizer", "momentum", "weight_decay", "schedule",
                     "warmup_steps", "augment", "train_size", "test_size", "seed", "image_size", "val_fraction")


def _finetune_model(source, arch, num_classes, in_channels):
    """The network to fine-tune, sized for the new task; its architecture from --model or the .npz file."""
    config = {}
    if str(source).endswith(".npz"):
        _, meta = weights.read_state_dict(source)
        if arch is None or arch == meta.get("arch"):
            arch = meta.get("arch")
            config = dict(meta.get("config") or {})  # keeps the shortcut option of a CIFAR ResNet
        if arch is None:
            raise ValueError(f"{source} does not say which architecture it holds: pass --model")
    else:
        if arch is None:
            raise ValueError(f"{source} is a PyTorch state dict, which does not say which architecture it holds: "
                             f"pass --model (resnet18, resnet50, ...)")
        try:
            import torch  # noqa: F401  (only to read the file)
        except ImportError:
            message = f"{source}: reading a PyTorch state dict needs PyTorch: pip install -e '.[torch]'"
            raise ValueError(message) from None
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown --model {arch!r}; expected one of: {', '.join(sorted(ARCHITECTURES))}")
    config.update(num_classes=num_classes, in_channels=in_channels)
    return ARCHITECTURES[arch](**config)


def finetune_command(args):
    """Load a checkpoint's backbone, put a new head on it, freeze, and train with two learning rates."""
    settings = {name: getattr(args, name) for name in FINETUNE_SETTINGS}
    if settings["backbone_lr"] is None:
        settings["backbone_lr"] = settings["head_lr"] / 2
    settings["command"] = "finetune"
    distributed.check_not_launched("finetune")
    _folder_options(settings)
    if settings["model"] is not None and settings["model"] not in ARCHITECTURES:  # before loading data
        build_model(settings["model"], 10, 1)
    source = args.source
    if args.weights is not None:
        settings["model"], source = _shipped_weights(args.weights, settings["model"])
        settings["weights"] = args.weights
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no checkpoint file at {source}")
    settings["from"] = os.path.abspath(source)
    normalisation = normalisation_of(weights.read_state_dict(source)[1]) if source.endswith(".npz") else None
    if normalisation is not None:  # shipped weights: the new images go through their normalisation
        settings["mean"], settings["std"] = normalisation
    classes = finetune.parse_classes(settings["classes"]) if settings["classes"] else None

    train_set, test_set = load_splits(settings, args.data)
    if classes is not None or settings["train_per_class"] is not None:
        classes = classes if classes is not None else list(range(train_set.num_classes))
        train_set = finetune.select_classes(train_set, classes, settings["train_per_class"], seed=settings["seed"])
        test_set = finetune.select_classes(test_set, classes)
    if settings["train_size"]:
        train_set = train_set.subset(range(min(settings["train_size"], len(train_set))))
    if settings["test_size"]:
        test_set = test_set.subset(range(min(settings["test_size"], len(test_set))))
    in_channels, num_classes = train_set.images.shape[1], train_set.num_classes

    backend.manual_seed(settings["seed"])
    model = _finetune_model(source, settings["model"], num_classes, in_channels)
    settings["model"] = model.arch
    finetune.load_backbone(model, source)
    frozen = finetune.freeze(model, settings["freeze"], keep_bn_stats=settings["frozen_bn"] == "eval")
    model.need_input_grad = False  # nobody uses the gradient of the images: backward may stop early

    batch_size = min(settings["batch_size"], len(train_set))
    augment = _augmentation(settings)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                              seed=settings["seed"], augment=augment)
    test_loader = DataLoader(test_set, batch_size=500, shuffle=False)
    groups = finetune.param_groups(model, settings["head_lr"], settings["backbone_lr"])
    optimizer = build_optimizer(dict(settings, lr=settings["head_lr"]), groups)
    scheduler = build_scheduler(settings, optimizer, settings["epochs"] * len(train_loader))

    out = args.out or _default_out(settings["dataset"], model.arch, prefix="finetune-")
    n_params = sum(p.size for p in model.parameters())
    n_trainable = sum(p.size for p in model.parameters() if p.requires_grad)
    rates = ", ".join(f"{g['name']} lr {g['initial_lr']:g}" for g in optimizer.param_groups)  # before warm-up
    print(f"fine-tuning {model.arch} from {source}: backbone loaded, new head fc "
          f"({model.fc.in_features} -> {num_classes} classes)")
    print(f"frozen: {len(frozen)} of {len(list(model.parameters()))} parameter tensors ({settings['freeze']}); "
          f"training {n_trainable:,} of {n_params:,} parameters ({rates}); batch norms of frozen layers "
          f"{'kept in eval mode' if settings['frozen_bn'] == 'eval' else 'in train mode'}")
    print(f"data: {settings['dataset']}{' classes ' + str(classes) if classes else ''}, {len(train_set):,} "
          f"training images, {len(test_set):,} test images, {settings['epochs']} epoch(s) of {len(train_loader)} "
          f"steps; writing to {out}")
    if normalisation is not None:
        print(f"inputs normalised as the weights were trained: mean {tuple(normalisation[0])}, "
              f"std {tuple(normalisation[1])}")
    history = fit(model, train_loader, test_loader, settings["epochs"], optimizer, scheduler, out_dir=out,
                  config=settings, progress=not args.no_progress)
    if history.get("val_acc"):
        print(f"test accuracy: {history['val_acc'][-1]:.2%}")
    print(f"checkpoint: {os.path.join(out, 'checkpoint.npz')}\ncurves: {os.path.join(out, 'curves.png')}")
    return 130 if history.get("interrupted") else 0


def _shipped_weights(name, arch):
    """(architecture, checked path) of the shipped weights ``name``; ``arch`` None: the one that ships them."""
    if arch is None:
        archs = sorted({a for a, n in pretrained.names() if n == name})
        if len(archs) != 1:
            known = ", ".join(f"--model {a} --weights {n}" for a, n in pretrained.names())
            raise ValueError(f"no weights named {name!r} ship with resnet_np; what ships: {known}"
                             if not archs else f"weights {name!r} ship for {', '.join(archs)}: pass --model")
        arch = archs[0]
    return arch, pretrained.path_of(arch, name)


def evaluate_command(args):
    """Test accuracy and confusion matrix (text and figure) of a checkpoint or of shipped weights."""
    if args.weights is not None:
        arch, path = _shipped_weights(args.weights, args.model)
        config = {}
        _, meta = weights.read_state_dict(path)
        trained_on = (meta.get("pretrained") or {}).get("dataset")
        model = ARCHITECTURES[arch](weights=args.weights)
        figure = os.path.join(_default_out(args.dataset or trained_on, arch, prefix="evaluate-"), "confusion.png")
    else:
        if args.model is not None:
            raise ValueError("--model goes with --weights; a checkpoint says which architecture it holds")
        path = args.checkpoint
        try:
            config = read_training_config(path)
        except ValueError:
            config = {}  # a plain model file: the dataset must be named
        _, meta = weights.read_state_dict(path)
        trained_on = config.get("dataset") or (meta.get("pretrained") or {}).get("dataset")
        model = load_model(path)
        figure = os.path.join(os.path.dirname(os.path.abspath(path)), "confusion.png")
    dataset = args.dataset or trained_on
    if dataset is None:
        raise ValueError(f"{path} does not say which dataset it was trained on: pass --dataset")
    # The checkpoint's own dataset: its settings (a folder's image size, held-out fraction and seed) apply.
    settings = dict(config) if dataset == config.get("dataset") else {"dataset": dataset}
    normalisation = normalisation_of(meta)
    if normalisation is not None:  # shipped weights: images normalised as they were trained
        settings["mean"], settings["std"] = normalisation
    _, test_set = load_splits(settings, args.data, train=False)
    if config.get("classes") and dataset == config.get("dataset"):  # a model fine-tuned on some classes
        test_set = finetune.select_classes(test_set, finetune.parse_classes(config["classes"]))
    outputs = model.fc.out_features if hasattr(model, "fc") else None
    if outputs is not None and outputs != test_set.num_classes:
        raise ValueError(f"{path}: the network has {outputs} outputs, but {dataset} has {test_set.num_classes} "
                         "classes: pass the --dataset it was trained on")
    # One pass over the test set: the accuracy is the matrix's diagonal.
    labels, predictions, loss = predict(model, DataLoader(test_set, batch_size=args.batch_size, shuffle=False))
    matrix = confusion_matrix(labels, predictions, test_set.num_classes)
    accuracy = matrix.trace() / matrix.sum()
    print(f"test accuracy: {accuracy:.2%} on the {len(test_set):,} {_test_images(dataset)} (loss {loss:.4f})")
    if test_set.num_classes <= 20:  # wider tables wrap into noise: the figure has them
        print(format_matrix(matrix, test_set.classes))
    figure = args.figure or figure
    os.makedirs(os.path.dirname(os.path.abspath(figure)), exist_ok=True)
    save_confusion_figure(matrix, test_set.classes, figure,
                          title=f"{getattr(model, 'arch', 'model')} on {dataset}: {accuracy:.2%}")
    print(f"confusion matrix: {figure}")
    return 0
