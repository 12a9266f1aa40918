"""What ``python -m resnet_np train``, ``finetune`` and ``evaluate`` do, once the arguments are parsed."""

import os

from . import backend, finetune
from .checkpoint import read_training_config
from .data import DataLoader, load_dataset
from .models import ARCHITECTURES
from .models import load as load_model
from .models import weights
from .optim import SGD, Adam, CosineAnnealingLR, LinearWarmup, MultiStepLR
from .train import evaluate, fit

# Random crops for everything; horizontal flips only where a mirror image is
# still the same class (a mirrored "3" is not a digit).
AUGMENTATION = {"mnist": "digits", "fashion-mnist": "digits", "cifar10": "cifar"}

CIFAR_RESNETS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")

SETTINGS = ("dataset", "model", "shortcut", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
            "schedule", "warmup_steps", "augment", "train_size", "test_size", "seed")


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


def _settings_from_args(args):
    settings = {name: getattr(args, name) for name in SETTINGS}
    if settings["lr"] is None:
        settings["lr"] = 0.1 if settings["optimizer"] == "sgd" else 1e-3
    return settings


def train_command(args):
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
        print(f"resuming {resume}: {settings}")
    else:
        settings = _settings_from_args(args)
    out = out or _default_out(settings["dataset"], settings["model"])
    if settings["model"] not in ARCHITECTURES:  # before the data is loaded: fail fast
        build_model(settings["model"], 10, 1)

    train_set = load_dataset(settings["dataset"], root=args.data, train=True)
    test_set = load_dataset(settings["dataset"], root=args.data, train=False)
    if settings["train_size"]:
        train_set = train_set.subset(range(min(settings["train_size"], len(train_set))))
    if settings.get("test_size"):
        test_set = test_set.subset(range(min(settings["test_size"], len(test_set))))
    in_channels, num_classes = train_set.images.shape[1], train_set.num_classes

    backend.manual_seed(settings["seed"])
    model = build_model(settings["model"], num_classes, in_channels, settings["shortcut"])
    augment = AUGMENTATION[settings["dataset"]] if settings["augment"] == "auto" else None
    train_loader = DataLoader(train_set, batch_size=settings["batch_size"], shuffle=True, drop_last=True,
                              seed=settings["seed"], augment=augment)
    test_loader = DataLoader(test_set, batch_size=500, shuffle=False)
    optimizer = build_optimizer(settings, model.parameters())
    scheduler = build_scheduler(settings, optimizer, settings["epochs"] * len(train_loader))

    n_params = sum(p.size for p in model.parameters())
    print(f"training {settings['model']} ({n_params:,} parameters) on {settings['dataset']}: "
          f"{len(train_set):,} images, {settings['epochs']} epoch(s) of {len(train_loader)} steps, "
          f"{settings['optimizer']} lr {settings['lr']:g}, {settings['schedule']} schedule, "
          f"backend {backend.current()}; writing to {out}")
    history = fit(model, train_loader, test_loader, settings["epochs"], optimizer, scheduler, out_dir=out,
                  resume=resume, config=settings, progress=not args.no_progress)
    if history.get("val_acc"):
        print(f"test accuracy: {history['val_acc'][-1]:.2%}")
    print(f"checkpoint: {os.path.join(out, 'checkpoint.npz')}\ncurves: {os.path.join(out, 'curves.png')}")
    return 130 if history.get("interrupted") else 0


def _default_out(dataset, model):
    return os.path.join("runs", f"{dataset}-{model}")


FINETUNE_SETTINGS = ("dataset", "classes", "train_per_class", "model", "freeze", "frozen_bn", "head_lr",
                     "backbone_lr", "epochs", "batch_size", "optimizer", "momentum", "weight_decay", "schedule",
                     "warmup_steps", "augment", "train_size", "test_size", "seed")


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
    settings["from"] = os.path.abspath(args.source)
    if not os.path.isfile(args.source):
        raise FileNotFoundError(f"no checkpoint file at {args.source}")
    if settings["model"] is not None and settings["model"] not in ARCHITECTURES:  # before loading data
        build_model(settings["model"], 10, 1)
    classes = finetune.parse_classes(settings["classes"]) if settings["classes"] else None

    train_set = load_dataset(settings["dataset"], root=args.data, train=True)
    test_set = load_dataset(settings["dataset"], root=args.data, train=False)
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
    model = _finetune_model(args.source, settings["model"], num_classes, in_channels)
    settings["model"] = model.arch
    finetune.load_backbone(model, args.source)
    frozen = finetune.freeze(model, settings["freeze"], keep_bn_stats=settings["frozen_bn"] == "eval")
    model.need_input_grad = False  # nobody uses the gradient of the images: backward may stop early

    batch_size = min(settings["batch_size"], len(train_set))
    augment = AUGMENTATION[settings["dataset"]] if settings["augment"] == "auto" else None
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                              seed=settings["seed"], augment=augment)
    test_loader = DataLoader(test_set, batch_size=500, shuffle=False)
    groups = finetune.param_groups(model, settings["head_lr"], settings["backbone_lr"])
    optimizer = build_optimizer(dict(settings, lr=settings["head_lr"]), groups)
    scheduler = build_scheduler(settings, optimizer, settings["epochs"] * len(train_loader))

    out = args.out or os.path.join("runs", f"finetune-{settings['dataset']}-{model.arch}")
    n_params = sum(p.size for p in model.parameters())
    n_trainable = sum(p.size for p in model.parameters() if p.requires_grad)
    rates = ", ".join(f"{g['name']} lr {g['initial_lr']:g}" for g in optimizer.param_groups)  # before warm-up
    print(f"fine-tuning {model.arch} from {args.source}: backbone loaded, new head fc "
          f"({model.fc.in_features} -> {num_classes} classes)")
    print(f"frozen: {len(frozen)} of {len(list(model.parameters()))} parameter tensors ({settings['freeze']}); "
          f"training {n_trainable:,} of {n_params:,} parameters ({rates}); batch norms of frozen layers "
          f"{'kept in eval mode' if settings['frozen_bn'] == 'eval' else 'in train mode'}")
    print(f"data: {settings['dataset']}{' classes ' + str(classes) if classes else ''}, {len(train_set):,} "
          f"training images, {len(test_set):,} test images, {settings['epochs']} epoch(s) of {len(train_loader)} "
          f"steps; writing to {out}")
    history = fit(model, train_loader, test_loader, settings["epochs"], optimizer, scheduler, out_dir=out,
                  config=settings, progress=not args.no_progress)
    if history.get("val_acc"):
        print(f"test accuracy: {history['val_acc'][-1]:.2%}")
    print(f"checkpoint: {os.path.join(out, 'checkpoint.npz')}\ncurves: {os.path.join(out, 'curves.png')}")
    return 130 if history.get("interrupted") else 0


def evaluate_command(args):
    try:
        config = read_training_config(args.checkpoint)
    except ValueError:
        config = {}  # a plain model file: the dataset must be named
    dataset = args.dataset or config.get("dataset")
    if dataset is None:
        raise ValueError(f"{args.checkpoint} does not say which dataset it was trained on: pass --dataset")
    model = load_model(args.checkpoint)
    test_set = load_dataset(dataset, root=args.data, train=False)
    if config.get("classes") and dataset == config.get("dataset"):  # a model fine-tuned on some classes
        test_set = finetune.select_classes(test_set, finetune.parse_classes(config["classes"]))
    loss, accuracy = evaluate(model, DataLoader(test_set, batch_size=args.batch_size, shuffle=False))
    print(f"test accuracy: {accuracy:.2%} on the {len(test_set):,} {dataset} test images (loss {loss:.4f})")
    return 0
