"""The shape every network of this package shares: a stem, stages of blocks, and a head.

    images -> stem -> stage 1 -> ... -> stage S -> head -> logits

* the **stem** turns the images into the first feature maps (``conv1``, and
  ``bn1``, ``relu``, ``maxpool`` where the family has them);
* the **stages** (``layer1``, ``layer2``, ...) are the residual blocks, each
  stage a ``Sequential`` built by the family's ``_make_layer``; a stage
  after the first halves the resolution and widens the maps;
* the **head** turns the last feature maps into class scores (``avgpool``,
  ``flatten``, ``fc``; a pre-activation network puts its last ``bn`` and
  ``relu`` first).

A family (``CifarResNet``, ``ResNet``, ``CifarResNeXt``, ``PreActResNet``)
builds its layers under torchvision's names and lists them in ``stem()``,
``stages()`` and ``head()``; ``Network`` does the rest, once for all of
them: ``forward`` runs the parts in order, ``backward`` runs the chain rule
through them in reverse, and ``reset_classifier`` and ``need_input_grad``
serve fine-tuning. The state dict is not affected: its keys come from the
attribute names (``conv1.weight``, ``layer2.0.bn1.running_mean``,
``fc.bias``) in the order the family set them.
"""

from ..backend import backend_of
from ..layers import Linear
from ..module import Module


class Network(Module):
    """A network read as stem -> stages -> head; subclasses build the layers and name the three parts.

    ``need_input_grad`` (True by default) says whether ``backward`` must
    return the gradient of the images. Training never uses it: set it to
    False and the first convolution skips it, and backward stops below the
    lowest part that still has a trainable parameter (a frozen backbone
    while fine-tuning): the rest of the chain rule would only compute
    gradients nobody uses.
    """

    def __init__(self):
        super().__init__()
        self.need_input_grad = True

    # -- the three parts, listed by each family ------------------------------------------

    def stem(self):
        """The layers from the images to the first stage, in forward order."""
        raise NotImplementedError(f"{type(self).__name__} does not list its stem")

    def stages(self):
        """The stages of residual blocks (``layer1``, ``layer2``, ...), in forward order."""
        raise NotImplementedError(f"{type(self).__name__} does not list its stages")

    def head(self):
        """The layers from the last stage to the logits, in forward order."""
        raise NotImplementedError(f"{type(self).__name__} does not list its head")

    def parts(self):
        """Every part of the chain, stem first: what ``forward`` runs and ``backward`` runs in reverse."""
        return self.stem() + self.stages() + self.head()

    # -- the two passes --------------------------------------------------------------

    def forward(self, x):
        """images (N, C, H, W) -> logits (N, num_classes)."""
        for layer in self.stem():
            x = layer(x)
        for stage in self.stages():
            x = stage(x)
        for layer in self.head():
            x = layer(x)
        return x

    def backward(self, dout):
        """dL/dimages from dL/dlogits; parameter gradients accumulate into ``.grad``.

        The chain rule read from the logits back: each part, last first,
        turns the gradient of its output into the gradient of its input.
        With ``need_input_grad = False`` it returns None, and it stops below
        the part nearest the images that still has a trainable parameter.
        """
        parts = self.parts()
        lowest = self._lowest_part_to_train(parts)
        d = dout
        for part in reversed(parts[max(lowest, 1):]):  # from the head down to the part above the first
            d = part.run_backward(d)
        if lowest > 0:
            return None  # below is frozen, and nobody asked for the images' gradient
        # The first convolution reads the images: their gradient only if asked for.
        return parts[0].run_backward(d, need_input_grad=self.need_input_grad)

    def _lowest_part_to_train(self, parts):
        """Where backward may stop: 0 (the stem's first layer) while the images' gradient is wanted;
        otherwise the index of the first part holding a trainable parameter (``len(parts)`` if none)."""
        if self.need_input_grad:
            return 0
        for i, part in enumerate(parts):
            if any(p.requires_grad for p in part.parameters()):
                return i
        return len(parts)

    # -- fine-tuning -------------------------------------------------------------------

    def reset_classifier(self, num_classes):
        """Replace ``fc`` by a new, freshly initialised ``Linear(features, num_classes)``; returns it.

        The first step of transfer learning: keep the features, learn a new
        head for the new classes. The new layer takes the dtype and device of
        the old one and its place in the state dict, and ``config`` follows,
        so ``save``/``load`` rebuild the network with its new number of classes.
        """
        old = self.fc
        self.fc = Linear(old.in_features, num_classes).astype(old.weight.dtype).to(backend_of(old.weight.data))
        if getattr(self, "config", None) is not None:
            self.config = dict(self.config, num_classes=num_classes)
        return self.fc
