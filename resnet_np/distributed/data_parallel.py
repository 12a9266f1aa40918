"""DistributedDataParallel: every rank trains the same model on its share of the batch.

One step on R ranks: each rank runs forward and backward on its own images,
then the gradients are summed over the ranks and divided by R (an
all-reduce), so every rank holds the same average and takes the same
optimizer step. Averaging is right because the loss of a batch is the mean
of its examples' losses: the gradient of a mean over R equal shares is the
mean of the shares' gradients (lesson 13 derives it).

The all-reduce need not wait for the end of backward. The gradients of the
last layers exist long before those of the first, so the trainable
parameters travel in *buckets*, and a bucket leaves as soon as every
gradient in it is complete, while backward carries on with the layers
below. "Complete" is what ``Parameter.register_post_accumulate_grad_hook``
says (module.py): each layer adds its parameters' gradients through
``accumulate_grad``, and the hook runs right after — as PyTorch's DDP
registers the hook of the same name.
"""

import time

from .. import backend
from ..backend import get_array_module, is_cupy_array, to_numpy
from ..module import Module
from .replicas import broadcast_state, check_same_model
from .world import init

# PyTorch's first bucket is 1 MB and the others 25 MB; ResNet-20's gradients are 1.1 MB in
# all, so anything larger than 1 MB would make one bucket, sent after backward: no overlap.
DEFAULT_BUCKET_MB = 1.0


class _Bucket:
    """The gradients of a few parameters, copied one after the other into one flat buffer.

    One all-reduce of a few hundred kilobytes costs little more than one of
    a few bytes (the latency is paid once), so the small tensors of a
    network travel together; and a bucket can leave as soon as all of its
    gradients exist, while backward carries on with the layers below.
    """

    def __init__(self, named_params, world):
        self.names = [name for name, _ in named_params]
        self.params = [p for _, p in named_params]
        self.offsets = []
        start = 0
        for p in self.params:
            self.offsets.append((start, start + p.size))
            start += p.size
        xp = get_array_module(self.params[0].data)
        self.flat = xp.empty(start, dtype=self.params[0].dtype)
        # With a CuPy array and an MPI that cannot read GPU memory, the all-reduce runs on a host copy.
        staged = is_cupy_array(self.flat) and not world.gpu_aware
        self.wire = backend.host.empty(start, dtype=self.flat.dtype) if staged else self.flat
        self.pending = len(self.params)
        self.request = None
        self.launched = self.done = None  # seconds since the start of backward (for lesson 13's timeline)

    @property
    def nbytes(self):
        return self.flat.nbytes

    def launch(self, world, now):
        """Pack the gradients (a missing one counts as zero) and start the all-reduce."""
        for p, (start, end) in zip(self.params, self.offsets):
            if p.grad is None:
                self.flat[start:end] = 0
            else:
                self.flat[start:end] = p.grad.reshape(-1)
        if self.wire is not self.flat:
            self.wire[...] = to_numpy(self.flat)
        elif is_cupy_array(self.flat):
            get_array_module(self.flat).cuda.get_current_stream().synchronize()
        self.request = world.iallreduce_(self.wire)
        self.launched = now

    def unpack(self, size):
        """The sum back in the gradients, divided by the number of ranks: the average."""
        if self.wire is not self.flat:
            self.flat[...] = get_array_module(self.flat).asarray(self.wire)
        if size > 1:
            self.flat /= size
        for p, (start, end) in zip(self.params, self.offsets):
            average = self.flat[start:end].reshape(p.shape)
            if p.grad is None:
                p.grad = average.copy()
            else:
                p.grad[...] = average


class DistributedDataParallel(Module):
    """``model`` trained on every rank at once: after ``backward`` each rank holds the average gradient.

    Use it where the model was used. It is a ``Module`` whose one child is
    ``module`` (the model itself) and whose modules are the model's, under
    the model's own names (see ``named_modules``): ``parameters``,
    ``named_parameters``, ``state_dict``, ``load_state_dict``, ``train``,
    ``eval``, ``zero_grad``, ``astype``, ... are ``Module``'s own, and give
    the model's keys, without the "module." prefix PyTorch's DDP adds: a
    file saved from the wrapper loads into the bare model, and back.
    ``forward`` is the model's; ``backward`` is the model's plus the
    all-reduce.

    At construction every rank checks that all ranks built the same model
    (a ValueError naming the first differences otherwise), then copies rank
    0's parameters and buffers: every rank starts from the same weights.

    ``backward(dout)`` runs the model's backward. The trainable parameters
    are grouped into buckets of about ``bucket_mb`` megabytes, in the order
    backward produces their gradients (the parameter list reversed at
    first; from the second step on, the order the first backward actually
    delivered them, as rank 0 saw it). A hook on each trainable parameter
    (``register_post_accumulate_grad_hook``) reports when its gradient is
    complete; when every gradient of the next bucket is, the bucket is
    flattened into one buffer and a non-blocking all-reduce
    (``MPI_Iallreduce``) starts, while backward continues with the layers
    below. After the model's backward, the remaining buckets are sent, all
    are awaited, and each gradient is overwritten with the sum divided by
    the number of ranks. Frozen parameters (``requires_grad=False``) are
    not sent.

    ``backward_seconds`` and ``wait_seconds`` describe the last backward:
    its length, and the time spent at the end waiting for communication
    that was not hidden. ``buckets`` lists the buckets.

    Convert batch norms (``convert_sync_batchnorm``) before wrapping. A
    module used twice in one forward pass (shared weights) is refused: its
    first gradient might already be on its way.
    """

    def __init__(self, module, world=None, bucket_mb=DEFAULT_BUCKET_MB):
        if isinstance(module, DistributedDataParallel):
            raise ValueError("DistributedDataParallel: the model is already wrapped")
        if not isinstance(bucket_mb, (int, float)) or isinstance(bucket_mb, bool) or not bucket_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_mb must be a positive number, got {bucket_mb!r}")
        super().__init__()
        self.module = module
        self.training = module.training
        self.world = world if world is not None else init()
        self.bucket_bytes = int(bucket_mb * 2 ** 20)
        check_same_model(self.world, module)
        broadcast_state(self.world, module)
        self.buckets = []
        self._layout = None          # the trainable parameters the buckets were made for
        self._slot = {}              # id(parameter) -> index of its bucket
        self._name = {}              # id(parameter) -> its name, for the error messages
        self._hooked = {}            # id(parameter) -> (parameter, handle of the hook that reports to us)
        self._arrivals = None        # the order gradients arrived in, during the first backward
        self._armed = False
        self._next = 0
        self._ready = set()
        self._start = 0.0
        self.backward_seconds = self.wait_seconds = 0.0

    def named_modules(self, prefix=""):
        """The wrapper, then the model's modules under the model's own names (no "module." prefix).

        Every tree walk of ``Module`` goes through here, so the wrapper's
        parameters, buffers, state-dict keys and modes are the model's.
        """
        yield prefix, self
        yield from self.module.named_modules(prefix)

    def __repr__(self):
        return f"DistributedDataParallel({self.world}, {len(self.buckets)} buckets,\n  {self.module!r})"

    # -- the two passes --------------------------------------------------------------

    def forward(self, *inputs):
        return self.module(*inputs)

    def backward(self, dout):
        """The model's backward; returns dL/dx. Every rank must call it, the same number of times."""
        self._prepare()
        self._armed = True
        try:
            dx = self.module.run_backward(dout)
        finally:
            self._armed = False
        self.backward_seconds = time.perf_counter() - self._start
        self._finish()
        return dx

    def _prepare(self):
        trainable = [(name, p) for name, p in self.module.named_parameters() if p.requires_grad]
        layout = tuple(id(p) for _, p in trainable)
        if layout != self._layout:
            self._layout = layout
            self._arrivals = []
            self._name = {id(p): name for name, p in trainable}
            self._make_buckets(trainable[::-1])
            self._hook_new_parameters(trainable)
        for bucket in self.buckets:
            bucket.pending, bucket.request, bucket.launched, bucket.done = len(bucket.params), None, None, None
        self._next = 0
        self._ready = set()
        self._start = time.perf_counter()

    def _make_buckets(self, ordered):
        """Consecutive parameters of one dtype and device, closed once a bucket holds ``bucket_bytes``."""
        self.buckets, current, size = [], [], 0
        for name, p in ordered:
            if current and (size >= self.bucket_bytes or p.dtype != current[0][1].dtype
                            or is_cupy_array(p.data) != is_cupy_array(current[0][1].data)):
                self.buckets.append(_Bucket(current, self.world))
                current, size = [], 0
            current.append((name, p))
            size += p.data.nbytes
        if current:
            self.buckets.append(_Bucket(current, self.world))
        self._slot = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket.params}

    def _hook_new_parameters(self, trainable):
        """Register ``_gradient_ready`` on each trainable parameter, once (the parameter is kept with its
        handle, so that its id cannot be reused by another while we remember it)."""
        for _, p in trainable:
            if id(p) not in self._hooked:
                self._hooked[id(p)] = (p, p.register_post_accumulate_grad_hook(self._gradient_ready))

    def _gradient_ready(self, p):
        """The hook: ``p``'s gradient is complete; launch every bucket that is now full, in order."""
        if not self._armed:
            return  # a backward of the bare model, outside ours
        slot = self._slot.get(id(p))
        if slot is None:
            return  # frozen since the buckets were made: not sent
        if id(p) in self._ready:
            raise RuntimeError(f"DistributedDataParallel: {self._name[id(p)]} received its gradient twice in one "
                               "backward pass (a module used twice in forward?); shared weights are not "
                               "supported: its first gradient may already have been sent")
        self._ready.add(id(p))
        if self._arrivals is not None:
            self._arrivals.append(id(p))
        self.buckets[slot].pending -= 1
        now = time.perf_counter() - self._start
        self._launch_ready_buckets(now)
        for bucket in self.buckets[:self._next]:
            if bucket.done is None and self.world.test(bucket.request):
                bucket.done = now

    def _launch_ready_buckets(self, now):
        # In bucket order, whatever order they filled in: every rank must start the same
        # collectives in the same order, or they would pair up the wrong buffers.
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            self.buckets[self._next].launch(self.world, now)
            self._next += 1

    def _finish(self):
        now = time.perf_counter() - self._start
        for bucket in self.buckets[self._next:]:
            bucket.pending = 0  # a parameter that got no gradient this time: sent as zeros
        self._launch_ready_buckets(now)
        start = time.perf_counter()
        for bucket in self.buckets:
            self.world.wait(bucket.request)
            if bucket.done is None:
                bucket.done = time.perf_counter() - self._start
            bucket.unpack(self.world.size)
        self.wait_seconds = time.perf_counter() - start
        if self._arrivals is not None:
            self._rebucket_in_arrival_order()

    def _rebucket_in_arrival_order(self):
        """After the first backward: buckets in the order the gradients really came (rank 0's order)."""
        trainable = [(name, p) for name, p in self.module.named_parameters() if p.requires_grad]
        position = {id(p): i for i, (_, p) in enumerate(trainable)}
        arrived = [position[pid] for pid in self._arrivals]
        self._arrivals = None
        order = self.world.broadcast_object(arrived)
        # Parameters whose gradient never came (an unused layer) go last.
        seen = set(order)
        order += [i for i in range(len(trainable) - 1, -1, -1) if i not in seen]
        self._make_buckets([trainable[i] for i in order])


def unwrap(model):
    """The model inside a DistributedDataParallel (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
