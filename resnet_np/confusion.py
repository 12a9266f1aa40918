"""Where a classifier goes wrong: the confusion matrix.

Accuracy is one number; the confusion matrix says *which* classes are
mistaken for which. Entry ``[i, j]`` counts the test images of true class
``i`` that the network called class ``j``: the diagonal holds the correct
answers, everything off it is a mistake (on CIFAR-10, mostly cats taken
for dogs and dogs for cats).
"""

from .backend import host, to_numpy


def predict(model, loader, loss_fn=None):
    """(true labels, predicted labels, mean loss) over ``loader``, in eval mode; the labels as int64 NumPy arrays.

    The loss is averaged as ``train.evaluate`` averages it (each batch's
    mean weighted by its size), so both report the same number for the
    same images, from a single pass.
    """
    from .layers import SoftmaxCrossEntropy  # here: the layers need not be imported to count a matrix

    loss_fn = loss_fn or SoftmaxCrossEntropy()
    was_training = model.training
    model.eval()
    truths, guesses, total_loss = [], [], 0.0
    try:
        for x, y in loader:
            logits = model(x)
            total_loss += loss_fn(logits, y) * len(y)
            truths.append(to_numpy(y))
            guesses.append(to_numpy(logits.argmax(axis=1)))
    finally:
        model.train(was_training)
    if not truths:
        raise ValueError("predict: the loader yielded no examples")
    labels = host.concatenate(truths).astype(host.int64)
    return labels, host.concatenate(guesses).astype(host.int64), total_loss / len(labels)


def confusion_matrix(labels, predictions, num_classes):
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    labels, predictions = host.asarray(labels), host.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"confusion_matrix: labels and predictions must be two 1-d arrays of one length, got "
                         f"shapes {labels.shape} and {predictions.shape}")
    for what, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {what} must lie in 0..{num_classes - 1}, got values from "
                             f"{values.min()} to {values.max()}")
    # Each (true, predicted) pair is one cell of a num_classes**2 grid: one bincount counts them all.
    cells = labels * num_classes + predictions
    return host.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def format_matrix(matrix, classes):
    """The matrix as a text table, rows and columns named by the class names, in full."""
    names = [str(c) for c in classes]
    width = 1 + max(5, max(len(n) for n in names), len(str(int(matrix.max()))))
    first = 1 + max(len("true\\pred"), max(len(n) for n in names))
    lines = ["true\\pred".ljust(first) + "".join(n.rjust(width) for n in names) + "  recall"]
    for i, (name, row) in enumerate(zip(names, matrix)):
        total = row.sum()
        recall = f"{row[i] / total:8.1%}" if total else "       -"  # the share of class i that was found
        lines.append(name.ljust(first) + "".join(str(int(v)).rjust(width) for v in row) + " " + recall)
    return "\n".join(lines)


def save_confusion_figure(matrix, classes, path, title="confusion matrix"):
    """The matrix as a heat map, each row as a share of its true class, counts written in the cells."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import write_atomically

    k = len(classes)
    shares = matrix / host.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * k, 0.8 + 0.55 * k))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
