"""What ``python -m resnet_np train``, ``finetune``, ``evaluate`` and ``predict`` do, once the arguments are parsed."""

import os

from . import backend, distributed, finetune
from .backend import host
from .checkpoint import read_training_config
from .confusion import confusion_matrix, format_matrix, predict, save_confusion_figure
from .data import DataLoader, Dataset, ImageFolder, load_dataset, split_per_class
from .data.loader import DistributedSampler
from .distributed import WORLD_OF_ONE
from .layers import SoftmaxCrossEntropy
from .models import ARCHITECTURES, pretrained, weights
from .models import load as load_model
from .optim import SGD, Adam, CosineAnnealingLR, LinearWarmup, MultiStepLR
from .train import _silent, fit


class UsageError(ValueError):
    """Arguments that do not go together (or with the checkpoint named): exit status 2 and one line."""


# Random crops for everything; horizontal flips only where a mirror image is
# still the same class (a mirrored "3" is not a digit).
AUGMENTATION = {"mnist": "digits", "fashion-mnist": "digits", "cifar10": "cifar"}

# A folder of your own images (--dataset folder:PATH): resized to IMAGE_SIZE x IMAGE_SIZE, and
# VAL_FRACTION of each class held out to test on, since a folder has no official test set.
FOLDER = "folder:"
IMAGE_SIZE = 32
VAL_FRACTION = 0.2

# The named datasets' image sides (what predict resizes a new image to).
IMAGE_SIDE = {"mnist": 28, "fashion-mnist": 28, "cifar10": 32}

# Warm-up takes at most this share of a run's steps: a 15-step run with the default 100 steps of
# warm-up would never reach its learning rate, and end at chance.
MAX_WARMUP_SHARE = 0.25

CIFAR_RESNETS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")


def build_model(name, num_classes, in_channels, shortcut=None):
    """The architecture ``name``, sized for the dataset."""
    if name not in ARCHITECTURES:
        raise UsageError(f"unknown --model {name!r}; expected one of: {', '.join(sorted(ARCHITECTURES))}")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if shortcut is not None:
        if name not in CIFAR_RESNETS:
            raise UsageError(f"--shortcut applies to the CIFAR-style resnets, not to {name}")
        kwargs["shortcut"] = shortcut
    return ARCHITECTURES[name](**kwargs)


def build_optimizer(settings, parameters):
    if settings["optimizer"] == "sgd":
        return SGD(parameters, lr=settings["lr"], momentum=settings["momentum"],
                   weight_decay=settings["weight_decay"])
    return Adam(parameters, lr=settings["lr"], weight_decay=settings["weight_decay"])


def warmup_steps(settings, total_steps):
    """The steps of warm-up of a run of ``total_steps``: ``--warmup-steps``, at most a quarter of the run."""
    return min(settings["warmup_steps"], int(MAX_WARMUP_SHARE * total_steps))


def build_scheduler(settings, optimizer, total_steps):
    """Linear warm-up, then cosine decay, the paper's steps (/10 at 50% and 75%), or a constant rate."""
    warmup = warmup_steps(settings, total_steps)
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


def split_name(dataset):
    """What the images a run is tested on are: the official "test" set, or the "held-out" part of a folder."""
    return "test" if folder_of(dataset) is None else "held-out"


def _test_images(dataset):
    """How the test images of ``dataset`` are called in the messages."""
    return f"{dataset} test images" if folder_of(dataset) is None else f"held-out images of {dataset}"


def _folder_options(settings):
    """Fill in the defaults of --image-size and --val-fraction for a folder; refuse them for a named dataset.

    A named dataset has its own image size and its own test set, so the two
    options would silently do nothing there: better to say so.
    """
    if folder_of(settings["dataset"]) is None:
        given = [option for option, key in (("--image-size", "image_size"), ("--val-fraction", "val_fraction"))
                 if settings[key] is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to --dataset "
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
        if images.num_classes < 2:
            raise ValueError(f"{path} has {images.num_classes} class ({', '.join(images.classes)}): a classifier "
                             "needs two or more, one sub-folder of images per class: add another class")
        train_set, test_set = split_per_class(images, settings.get("val_fraction") or VAL_FRACTION,
                                              seed=settings.get("seed", 0))
        if not len(test_set):
            raise ValueError(f"{path}: no class has two images, so none can be held out to test on: add images")
    if settings.get("mean") is not None:  # trained weights (or a resumed run): their normalisation, not the data's
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


def settings_from_args(args):
    """The settings of a run: the options the parser marks as recorded, defaults filled in."""
    settings = {name: default if getattr(args, name) is None else getattr(args, name)
                for name, default in args.recorded.items()}
    if "lr" in settings and settings["lr"] is None:
        settings["lr"] = 0.1 if settings["optimizer"] == "sgd" else 1e-3
    _folder_options(settings)
    return settings


def _given(args):
    """The recorded settings given on the command line (the others are None until defaults fill them in)."""
    return {name: getattr(args, name) for name in args.recorded if getattr(args, name) is not None}


def _option(name):
    return "--" + name.replace("_", "-")


def _check_out(out):
    """Refuse an --out that is a file, or a folder that cannot be made, before any work is done (the
    checkpoint goes into a folder)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder: name a folder for checkpoint.npz and curves.png")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the folder ({e.strerror}): name a folder you can write "
                         "to") from None


# ----------------------------------------------------------------------------
# train and finetune: each prepares its model and data, then both run the same way
# ----------------------------------------------------------------------------

def train_command(args):
    """Train (``--distributed``: on every rank mpiexec started, rank 0 printing and writing)."""
    world = distributed.init() if getattr(args, "distributed", False) else WORLD_OF_ONE
    if not getattr(args, "distributed", False):
        distributed.check_not_launched("train")
    elif backend.current() == "cupy":
        distributed.use_local_gpu(world)  # before any array is made on the GPU
    say = print if world.is_main else _silent
    resume = None
    if args.resume:
        resume = args.resume if isinstance(args.resume, str) else os.path.join(
            args.out or _default_out(args.dataset or "mnist", args.model or "resnet20"), "checkpoint.npz")
        settings = _resumed_settings(resume, _given(args), args.recorded)
        out = args.out or os.path.dirname(os.path.abspath(resume))
        say(f"resuming {resume}: {settings}")
    else:
        settings = settings_from_args(args)
        out = args.out or _default_out(settings["dataset"], settings["model"])
    _check_out(out)

    if not world.is_main:
        world.barrier()  # rank 0 reads (and if need be downloads) the data first, alone
    train_set, test_set = load_splits(settings, args.data)
    if world.is_main and world.size > 1:
        world.barrier()

    backend.manual_seed(settings["seed"])
    model = build_model(settings["model"], train_set.num_classes, train_set.images.shape[1], settings["shortcut"])
    model.need_input_grad = False  # nobody uses the gradient of the images: the first convolution skips it
    n_params = sum(p.size for p in model.parameters())
    start = "from its checkpoint" if resume is not None else "from scratch"
    headline = [f"training {settings['model']} ({n_params:,} parameters) {start} on {settings['dataset']}, "
                f"{settings['optimizer']} lr {settings['lr']:g}"]
    if world.size > 1:
        model = distributed.DistributedDataParallel(distributed.convert_sync_batchnorm(model, world), world)
        share = distributed.check_batch_size(settings["batch_size"], world)
        headline.append(f"distributed: {world.size} process(es), {share} images of each batch of "
                        f"{settings['batch_size']} per rank, batch norms synchronised "
                        f"({distributed.describe_ranks(world)})")
    return _run(settings, model, model.parameters(), train_set, test_set, out, headline, args,
                resume=resume, world=world, say=say)


def _listed(class_names):
    """Class names as one printable string: "cat, dog"."""
    return ", ".join(map(str, class_names))


def _resumed_settings(resume, given, defaults):
    """The settings ``resume`` recorded (``defaults`` for those an older version did not record); an error if
    the command line tries to change them."""
    if os.path.isdir(resume):
        raise UsageError(f"--resume {resume} is a folder: name the checkpoint.npz in it")
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"no checkpoint to resume at {resume}" + (
            "" if os.path.exists(resume) else ": name it (--resume PATH) or the --out folder of the run"))
    settings = read_training_config(resume)
    if not settings:
        raise ValueError(f"{resume} does not record the settings of its run; cannot resume it")
    if settings.get("command") == "finetune":
        raise ValueError(f"{resume} was written by finetune, which cannot be resumed: run finetune again "
                         f"(its weights load with --from {resume})")
    settings = dict({name: value for name, value in defaults.items() if value is not None}, **settings)
    changed = {name: value for name, value in given.items() if settings.get(name) != value}
    if changed:
        asked = ", ".join(f"{_option(name)} {value} (the run's: {settings.get(name)})"
                          for name, value in changed.items())
        longer = (f"; to train longer, start a new run with --epochs {changed['epochs']} (another --out), or "
                  f"continue from its weights: python -m resnet_np finetune --from {resume} --freeze none "
                  f"--epochs N" if "epochs" in changed else "")
        raise UsageError(f"--resume continues {resume} with the settings it recorded, and cannot change them: "
                         f"{asked}. Its schedule was planned for its own epochs{longer}")
    return settings


def finetune_command(args):
    """Load a checkpoint's backbone, put a new head on it, freeze, and train with two learning rates."""
    settings = settings_from_args(args)
    if settings["backbone_lr"] is None:
        settings["backbone_lr"] = settings["head_lr"] / 2
    settings["lr"] = settings["head_lr"]  # what the optimizer's first group starts from
    settings["command"] = "finetune"
    distributed.check_not_launched("finetune")
    source = args.source
    if args.weights is not None:
        settings["model"], source = _shipped_weights(args.weights, settings["model"])
        settings["weights"] = args.weights
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no checkpoint file at {source}" + (
            " (a folder: name the checkpoint.npz in it)" if os.path.isdir(source) else ""))
    settings["from"] = os.path.abspath(source)
    normalisation = normalisation_of(weights.read_state_dict(source)[1]) if source.endswith(".npz") else None
    if normalisation is not None:  # shipped weights: the new images go through their normalisation
        settings["mean"], settings["std"] = normalisation
    out = args.out  # the default needs the architecture, known once the model is built
    if out is not None:
        _check_out(out)
    classes = finetune.parse_classes(settings["classes"]) if settings["classes"] else None

    train_set, test_set = load_splits(settings, args.data)
    if classes is not None or settings["train_per_class"] is not None:
        classes = classes if classes is not None else list(range(train_set.num_classes))
        train_set = finetune.select_classes(train_set, classes, settings["train_per_class"], seed=settings["seed"])
        test_set = finetune.select_classes(test_set, classes)
    settings["batch_size"] = min(settings["batch_size"], settings["train_size"] or len(train_set), len(train_set))

    backend.manual_seed(settings["seed"])
    model = _finetune_model(source, settings["model"], train_set.num_classes, train_set.images.shape[1])
    settings["model"] = model.arch
    finetune.load_backbone(model, source)
    frozen = finetune.freeze(model, settings["freeze"], keep_bn_stats=settings["frozen_bn"] == "eval")
    model.need_input_grad = False  # nobody uses the gradient of the images: backward may stop early
    groups = finetune.param_groups(model, settings["head_lr"], settings["backbone_lr"])

    out = out or _default_out(settings["dataset"], model.arch, prefix="finetune-")
    _check_out(out)
    n_params = sum(p.size for p in model.parameters())
    n_trainable = sum(p.size for p in model.parameters() if p.requires_grad)
    rates = ", ".join(f"{g['name']} lr {g['lr']:g}" for g in groups)
    headline = [f"fine-tuning {model.arch} from {source}: backbone loaded, new head fc "
                f"({model.fc.in_features} -> {train_set.num_classes} classes)",
                f"frozen: {len(frozen)} of {len(list(model.parameters()))} parameter tensors ({settings['freeze']}); "
                f"training {n_trainable:,} of {n_params:,} parameters ({rates}); batch norms of frozen layers "
                f"{'kept in eval mode' if settings['frozen_bn'] == 'eval' else 'in train mode'}"]
    if classes:
        headline.append(f"classes {classes} of {settings['dataset']}, relabelled 0..{len(classes) - 1}")
    if normalisation is not None:
        headline.append(f"inputs normalised as the weights were trained: mean {tuple(normalisation[0])}, "
                        f"std {tuple(normalisation[1])}")
    return _run(settings, model, groups, train_set, test_set, out, headline, args)


def _run(settings, model, parameters, train_set, test_set, out, headline, args, resume=None, world=WORLD_OF_ONE,
         say=print):
    """What train and finetune end with: subset -> loaders -> optimizer and schedule -> banner -> fit -> report."""
    if settings["train_size"]:
        train_set = train_set.subset(range(min(settings["train_size"], len(train_set))))
    if settings["test_size"]:
        test_set = test_set.subset(range(min(settings["test_size"], len(test_set))))
    if train_set.num_classes < 2:
        raise ValueError(f"{settings['dataset']} has one class: a classifier needs two or more")
    # --batch-size is the global batch: the optimizer's, whatever the number of ranks.
    batch_size = settings["batch_size"] if world.size == 1 else distributed.check_batch_size(
        settings["batch_size"], world)  # this rank's share
    sampler = DistributedSampler(world.size, world.rank, drop_last=True) if world.size > 1 else None
    share = len(train_set) if sampler is None else sampler.share_length(len(train_set))
    if share < batch_size:
        whose = "" if world.size == 1 else f"each of the {world.size} ranks gets {share} of "
        raise ValueError(f"--batch-size {settings['batch_size']} is more than {whose}the {len(train_set):,} "
                         f"training images of {settings['dataset']}: lower --batch-size (at most {len(train_set)}"
                         f"{'' if world.size == 1 else ' in all'}) or add images")
    # What predict needs to treat a new image as these were (and resume and evaluate, to see them again).
    settings.setdefault("mean", list(train_set.mean))
    settings.setdefault("std", list(train_set.std))
    recorded = settings.get("class_names")
    if resume is not None and recorded and list(map(str, recorded)) != list(map(str, train_set.classes)):
        raise ValueError(f"--resume {resume}: the run was trained on the classes {_listed(recorded)}, but "
                         f"{settings['dataset']} now has {_listed(train_set.classes)}: its outputs would change "
                         "meaning; put the class folders back as they were, or start a new run")
    settings["class_names"] = list(train_set.classes)

    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                              seed=settings["seed"], augment=_augmentation(settings), sampler=sampler)
    test_loader = DataLoader(test_set, batch_size=500, shuffle=False,
                             sampler=DistributedSampler(world.size, world.rank, pad=False) if world.size > 1 else None)
    optimizer = build_optimizer(settings, parameters)
    total_steps = settings["epochs"] * len(train_loader)
    scheduler = build_scheduler(settings, optimizer, total_steps)

    tested_on = split_name(settings["dataset"])
    smoothing = settings.get("label_smoothing") or 0.0  # .get: checkpoints from before the option (0)
    if smoothing:
        headline = [*headline, f"loss: cross-entropy with label smoothing {smoothing:g}"]
    for line in headline:
        say(line)
    warmup = warmup_steps(settings, total_steps)
    capped = (f" (not --warmup-steps {settings['warmup_steps']}: at most a quarter of the run)"
              if warmup < settings["warmup_steps"] else "")
    say(f"data: {settings['dataset']}, {len(train_set):,} training images, {len(test_set):,} {tested_on} images; "
        f"{settings['epochs']} epoch(s) of {len(train_loader)} steps of {settings['batch_size']} images, "
        f"{warmup} warm-up step(s){capped}, then {settings['schedule']} schedule; backend {backend.current()}; "
        f"writing to {out}", flush=True)
    if resume is not None:
        done = _epochs_done(resume)
        if done >= settings["epochs"]:
            say(f"{resume} finished its {settings['epochs']} epoch(s) already: nothing left to resume")
            return 0
    history = fit(model, train_loader, test_loader, settings["epochs"], optimizer, scheduler,
                  loss_fn=SoftmaxCrossEntropy(label_smoothing=smoothing), out_dir=out, resume=resume,
                  config=settings, progress=not args.no_progress, world=world, log=say, val_name=tested_on)
    if history.get("interrupted"):
        return 130  # fit said which checkpoint, if any, is kept
    if history.get("val_acc"):
        say(f"{tested_on} accuracy: {history['val_acc'][-1]:.2%}")
    if os.path.isfile(os.path.join(out, "checkpoint.npz")):  # never claim a file that is not there
        say(f"checkpoint: {os.path.join(out, 'checkpoint.npz')}\ncurves: {os.path.join(out, 'curves.png')}")
    return 0


def _epochs_done(path):
    """How many epochs the training checkpoint ``path`` has done."""
    _, meta = weights.read_state_dict(path)
    return int((meta.get("training") or {}).get("epoch") or 0)


def _default_out(dataset, model, prefix=""):
    """runs/<dataset>-<model>; for folder:PATH, runs/folder-<the folder's name>-<model>."""
    path = folder_of(dataset)
    if path is not None:
        dataset = "folder-" + os.path.basename(os.path.normpath(path))
    return os.path.join("runs", f"{prefix}{dataset}-{model}")


def _finetune_model(source, arch, num_classes, in_channels):
    """The network to fine-tune, sized for the new task; its architecture from --model or the .npz file."""
    config = {}
    if str(source).endswith(".npz"):
        _, meta = weights.read_state_dict(source)
        if arch is not None and meta.get("arch") not in (None, arch):
            # Intended (a backbone reused in another network of the same layout), but never silent.
            print(f"note: {source} holds a {meta['arch']}; its backbone goes into the {arch} that --model names "
                  f"(the weights must fit key by key)")
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
        raise ValueError(f"{source} holds an unknown architecture {arch!r}; expected one of: "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    config.update(num_classes=num_classes, in_channels=in_channels)
    return ARCHITECTURES[arch](**config)


def _shipped_weights(name, arch):
    """(architecture, checked path) of the shipped weights ``name``; ``arch`` None: the one that ships them."""
    archs = sorted({a for a, n in pretrained.names() if n == name})
    if arch is None:
        if len(archs) != 1:
            known = ", ".join(f"--model {a} --weights {n}" for a, n in pretrained.names())
            raise UsageError(f"no weights named {name!r} ship with resnet_np; what ships: {known}"
                             if not archs else f"weights {name!r} ship for {', '.join(archs)}: pass --model")
        arch = archs[0]
    elif arch not in archs:
        known = ", ".join(f"{a}(weights={n!r})" for a, n in pretrained.names())
        raise UsageError(f"no weights named {name!r} ship for {arch}; what ships: {known}")
    return arch, pretrained.path_of(arch, name)


# ----------------------------------------------------------------------------
# Using a trained network: evaluate and predict
# ----------------------------------------------------------------------------

def _trained_network(args):
    """(model, its training settings, its file's metadata, path) of --checkpoint or --weights (--model)."""
    if args.weights is not None:
        arch, path = _shipped_weights(args.weights, args.model)
        _, meta = weights.read_state_dict(path)
        return pretrained.load(arch, args.weights, {}), {}, meta, path
    if args.model is not None:
        raise UsageError("--model goes with --weights; a checkpoint says which architecture it holds")
    path = args.checkpoint
    if os.path.isdir(path):
        raise UsageError(f"--checkpoint {path} is a folder: name the checkpoint.npz in it")
    try:
        config = read_training_config(path)
    except ValueError:
        config = {}  # a plain model file: the dataset must be named
    _, meta = weights.read_state_dict(path)
    return load_model(path), config, meta, path


def _network_classes(model, config, meta):
    """The class names the network's outputs stand for, from its file; None where the file does not say."""
    names = config.get("class_names") or (meta.get("pretrained") or {}).get("classes")
    outputs = model.fc.out_features if hasattr(model, "fc") else None
    if names and (outputs is None or len(names) == outputs):
        return list(names)
    return None


def evaluate_command(args):
    """Test accuracy and confusion matrix (text and figure) of a checkpoint or of shipped weights."""
    model, config, meta, path = _trained_network(args)
    trained_on = config.get("dataset") or (meta.get("pretrained") or {}).get("dataset")
    dataset = args.dataset or trained_on
    if dataset is None:
        raise UsageError(f"{path} does not say which dataset it was trained on: pass --dataset")
    if args.weights is not None:
        figure = os.path.join(_default_out(dataset, model.arch, prefix="evaluate-"), "confusion.png")
    else:
        figure = os.path.join(os.path.dirname(os.path.abspath(path)), "confusion.png")
    figure = args.figure or figure
    if os.path.isdir(figure):
        raise UsageError(f"--figure {figure} is a folder: name the PNG file to write")
    try:  # before the evaluation, not after it
        os.makedirs(os.path.dirname(os.path.abspath(figure)), exist_ok=True)
    except OSError as e:
        raise UsageError(f"--figure {figure}: cannot create its folder ({e.strerror}): name a PNG file in a "
                         "folder you can write to") from None
    # The checkpoint's own dataset: its settings (a folder's image size, held-out fraction and seed) apply.
    settings = dict(config) if dataset == config.get("dataset") else {"dataset": dataset}
    normalisation = normalisation_of(meta)
    if normalisation is not None:  # shipped weights: images normalised as they were trained
        settings["mean"], settings["std"] = normalisation
    _, test_set = load_splits(settings, args.data, train=False)
    if config.get("classes") and dataset == config.get("dataset"):  # a model fine-tuned on some classes
        test_set = finetune.select_classes(test_set, finetune.parse_classes(config["classes"]))
    names = _network_classes(model, config, meta)
    test_set = _the_classes_it_knows(test_set, names)
    outputs = model.fc.out_features if hasattr(model, "fc") else None
    if outputs is not None and outputs != test_set.num_classes:
        raise ValueError(f"{path}: the network has {outputs} outputs, but {dataset} has {test_set.num_classes} "
                         "classes: pass the --dataset it was trained on")
    if names and list(map(str, names)) != list(map(str, test_set.classes)):
        # Output i means the network's class i: scoring it against another class of that index is a wrong label.
        raise ValueError(f"{path}: the network's classes are {_listed(names)}, but {dataset}'s are "
                         f"{_listed(test_set.classes)}: pass the --dataset it was trained on (for a folder: the "
                         "same class sub-folders)")
    conv1 = getattr(model, "conv1", None)
    if conv1 is not None and getattr(conv1, "in_channels", None) not in (None, test_set.images.shape[1]):
        raise ValueError(f"{path}: the network takes images of {conv1.in_channels} channel(s), but {dataset}'s "
                         f"have {test_set.images.shape[1]}: pass the --dataset it was trained on")
    # One pass over the test set: the accuracy is the matrix's diagonal.
    labels, predictions, loss = predict(model, DataLoader(test_set, batch_size=args.batch_size, shuffle=False))
    matrix = confusion_matrix(labels, predictions, test_set.num_classes)
    accuracy = matrix.trace() / matrix.sum()
    print(f"{split_name(dataset)} accuracy: {accuracy:.2%} on the {len(test_set):,} {_test_images(dataset)} "
          f"(loss {loss:.4f})")
    if test_set.num_classes <= 20:  # wider tables wrap into noise: the figure has them
        print(format_matrix(matrix, test_set.classes))
    save_confusion_figure(matrix, test_set.classes, figure,
                          title=f"{getattr(model, 'arch', 'model')} on {dataset}: {accuracy:.2%}")
    print(f"confusion matrix: {figure}")
    return 0


def _the_classes_it_knows(test_set, names):
    """The test images of the classes a network was trained on, when they are some of the dataset's, by name.

    Lesson 14's ``cifar10-8classes`` weights know 8 of CIFAR-10's classes:
    they are tested on those 8, relabelled in the weights' order.
    """
    if not names or list(names) == list(test_set.classes) or not set(names) <= set(test_set.classes):
        return test_set
    return finetune.select_classes(test_set, [list(test_set.classes).index(name) for name in names])


def predict_command(args):
    """The top classes of each image file, with probabilities, as the network's training images were seen."""
    from .predict import read_images, top_classes

    model, config, meta, path = _trained_network(args)
    dataset = config.get("dataset") or (meta.get("pretrained") or {}).get("dataset")
    classes = _network_classes(model, config, meta)
    mean, std = config.get("mean"), config.get("std")
    if mean is None and normalisation_of(meta) is not None:
        mean, std = normalisation_of(meta)
    if dataset is not None and mean is None:  # a checkpoint written before it recorded its normalisation
        _, test_set = load_splits(config or {"dataset": dataset}, args.data, train=False)
        if config.get("classes"):  # fine-tuned on some classes: its outputs are those, in that order
            test_set = finetune.select_classes(test_set, finetune.parse_classes(config["classes"]))
        mean, std, classes = test_set.mean, test_set.std, classes or list(test_set.classes)
    outputs = model.fc.out_features if hasattr(model, "fc") else None
    if classes is not None and outputs is not None and len(classes) != outputs:
        raise ValueError(f"{path}: the network has {outputs} outputs, but {len(classes)} class names")
    if mean is None or classes is None:
        raise ValueError(f"{path} does not record how its images were normalised or what its classes are: "
                         "predict needs a checkpoint written by train or finetune, or shipped weights")
    if folder_of(dataset or "") is not None:
        side = config.get("image_size") or IMAGE_SIZE
    else:
        side = IMAGE_SIDE.get(dataset, IMAGE_SIZE)
    images = read_images(args.images, side, len(mean))
    unlabelled = Dataset(images, host.zeros(len(images), dtype=host.int64), classes, mean, std, name="images")
    loader = DataLoader(unlabelled, batch_size=100, shuffle=False)
    for image_path, ranked in zip(args.images, top_classes(model, loader, classes, args.top)):
        print(f"{image_path}: " + ", ".join(f"{name} {p:.1%}" for name, p in ranked))
    return 0
