"""Data parallelism on MPI: several processes train one network, each on its share of every batch.

    mpiexec -n 2 python -m resnet_np train --distributed

``mpiexec`` starts the same program several times; each copy is a *rank*
(0, 1, ...) of a *world* of ``size`` processes. Every rank holds the whole
network, and one training step goes:

1. each rank takes its own share of the batch (``data.DistributedSampler``);
2. forward and backward on that share: local gradients;
3. the gradients are summed over the ranks and divided by their number
   (an *all-reduce*), so every rank ends with the same average;
4. every rank takes the same optimizer step, and the copies stay equal.

Averaging is right because the loss of a batch is the mean of the losses
of its examples: the gradient of a mean over R equal shares is the mean of
the shares' gradients. Batch normalisation is the exception (its output
depends on the whole batch through the batch mean and variance), hence
``SyncBatchNorm``. Lesson 13 derives both.

What this file holds:

* ``init()`` — the world: ``rank``, ``size``, ``comm`` (mpi4py's
  ``COMM_WORLD``). Without ``mpiexec``, or without mpi4py, it is a world of
  one, and every script runs unchanged alone.
* ``DistributedDataParallel(model)`` — the model with the same ``forward``,
  ``backward``, ``parameters`` and ``state_dict``; it starts every rank from
  rank 0's weights, and its ``backward`` leaves the averaged gradients,
  sent in buckets while backward is still running.
* ``SyncBatchNorm`` and ``convert_sync_batchnorm`` — batch statistics over
  the ranks' images together, as one process would compute them.
* Faults: a rank that raises prints its rank and error and calls
  ``MPI_Abort``, which ends every process (without it the others would wait
  for it forever inside a collective).

MPICH, while it waits inside a call, polls in a loop and keeps a core 100 %
busy. On a machine with as many cores as ranks (or fewer, or shared) that
steals the core from the rank that is still computing, or from whoever
else uses the machine. ``init()`` therefore sets ``MPICH_YIELD`` in the
environment before MPI starts, unless the variable is already set: a
waiting rank then sleeps between polls. It costs latency (a small
all-reduce on 2 ranks: about 0.3 ms instead of 0.015 ms), measured in
``benchmarks/results/distributed.md``; on a dedicated cluster node export
``MPIR_CVAR_ENABLE_HEAVY_YIELD=0`` to keep MPICH's spinning.

On the GPU (CuPy arrays) the same code runs. With a CUDA-aware MPI, set
``RESNET_NP_MPI_GPU_AWARE=1`` and device arrays go to MPI as they are (the
stream is synchronised first, so MPI never reads a gradient still being
computed); otherwise each buffer is staged through a host copy. Each rank
should use its own GPU: ``use_local_gpu(world)``.
"""

import os
import sys
import time

from .. import backend
from ..backend import get_array_module, is_cupy_array, to_numpy
from ..checks import check_dim, check_dout, check_float_input, check_forward_done, layer_name
from ..layers import BatchNorm2d
from ..module import Parameter

# What makes a waiting MPICH rank sleep instead of spin (see the module docstring).
MPICH_YIELD = {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}

# How long a failing rank waits, after printing why, before MPI_Abort ends every process.
ABORT_GRACE_SECONDS = 0.5

# Environment variables by which launchers tell a process how many were started.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

# PyTorch's first bucket is 1 MB and the others 25 MB; ResNet-20's gradients are 1.1 MB in
# all, so anything larger than 1 MB would make one bucket, sent after backward: no overlap.
DEFAULT_BUCKET_MB = 1.0


# ----------------------------------------------------------------------------
# The world
# ----------------------------------------------------------------------------

class _Done:
    """The request of an operation that is already complete (a world of one)."""

    def Test(self):
        return True

    def Wait(self):
        return None


class World:
    """The processes of this job: ``rank`` (0 ... ``size`` - 1), ``size`` and mpi4py's ``comm``.

    ``comm`` is None in a world of one; every method then does what the
    collective would do with a single process. Arrays may be NumPy or CuPy.
    ``wait_seconds`` adds up the time spent blocked in collectives: the
    communication that computation did not hide (and waiting for a slower
    rank, which looks the same from here).
    """

    def __init__(self, comm=None, mpi=None):
        self.comm = comm
        self._mpi = mpi
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.gpu_aware = os.environ.get("RESNET_NP_MPI_GPU_AWARE", "") == "1"
        self.wait_seconds = 0.0

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size}, comm={'MPI.COMM_WORLD' if self.comm else None})"

    @property
    def is_main(self):
        """Rank 0: the one that prints, logs and writes files."""
        return self.rank == 0

    # -- arrays on the wire ---------------------------------------------------

    def _wire(self, array):
        """What MPI is handed for ``array``: itself, or a host copy of a CuPy array without CUDA-aware MPI."""
        if not is_cupy_array(array):
            return array
        if self.gpu_aware:
            # Kernels run asynchronously: MPI must not read the buffer before they finished writing it.
            get_array_module(array).cuda.get_current_stream().synchronize()
            return array
        return to_numpy(array)

    def _back(self, array, wire):
        """Copy the result in ``wire`` into ``array`` when they are not the same buffer."""
        if wire is not array:
            array[...] = get_array_module(array).asarray(wire)

    # -- collectives ----------------------------------------------------------

    def broadcast_(self, array, root=0):
        """Overwrite ``array`` on every rank with rank ``root``'s (in place)."""
        if self.comm is None:
            return array
        wire = self._wire(array)
        self.comm.Bcast(wire, root=root)
        self._back(array, wire)
        return array

    def allreduce(self, array):
        """The element-wise sum of ``array`` over the ranks (a new array; blocks until every rank gives its own)."""
        out = array.copy()
        if self.comm is None:
            return out
        start = time.perf_counter()
        wire = self._wire(out)
        self.comm.Allreduce(self._mpi.IN_PLACE, wire, op=self._mpi.SUM)
        self._back(out, wire)
        self.wait_seconds += time.perf_counter() - start
        return out

    def allgather(self, array):
        """Every rank's ``array``, stacked in rank order: shape (size, *array.shape)."""
        xp = get_array_module(array)
        if self.comm is None:
            return array[None].copy()
        start = time.perf_counter()
        wire = self._wire(array)
        out_xp = xp if wire is array else backend.host  # a staged CuPy array gathers on the host
        out = out_xp.empty((self.size,) + tuple(array.shape), dtype=array.dtype)
        self.comm.Allgather(wire, out)
        self.wait_seconds += time.perf_counter() - start
        return xp.asarray(out)

    def iallreduce_(self, buffer):
        """Start summing ``buffer`` over the ranks in place; returns the request (``Test``, ``Wait``).

        ``buffer`` must be what MPI may read and write directly (a NumPy
        array, or a CuPy array with CUDA-aware MPI) and must not be touched
        until the request completed.
        """
        if self.comm is None:
            return _Done()
        return self.comm.Iallreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)

    def test(self, request):
        """True once ``request`` completed. Also what moves MPI's work along: MPICH progresses
        a non-blocking collective only inside MPI calls, so backward calls this between layers."""
        return request.Test()

    def wait(self, request):
        start = time.perf_counter()
        request.Wait()
        self.wait_seconds += time.perf_counter() - start

    def sum_numbers(self, *values):
        """Each of ``values`` (Python numbers) summed over the ranks, as floats: one all-reduce for all."""
        if self.comm is None:
            return tuple(float(v) for v in values)
        return tuple(float(v) for v in self.allreduce(backend.host.asarray(values, dtype=backend.host.float64)))

    def allgather_object(self, obj):
        """Every rank's ``obj`` (a small picklable value), in rank order."""
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def broadcast_object(self, obj, root=0):
        return obj if self.comm is None else self.comm.bcast(obj, root=root)

    def barrier(self):
        if self.comm is not None:
            start = time.perf_counter()
            self.comm.Barrier()
            self.wait_seconds += time.perf_counter() - start

    def abort(self, code=1, message=None):
        """End every process of the job: print ``message`` (naming this rank), then ``MPI_Abort``.

        A rank that simply exits leaves the others blocked forever in their
        next collective; ``MPI_Abort`` makes mpiexec kill them all. In a
        world of one it exits this process.
        """
        if message:
            print(message, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        if self.comm is None:
            raise SystemExit(code)
        # What this rank printed travels through mpiexec's proxy; MPI_Abort tears the job down at
        # once, and without a moment's grace the message naming the rank was lost (2 runs in 20).
        time.sleep(ABORT_GRACE_SECONDS)
        self.comm.Abort(code)

    @property
    def local_rank(self):
        """This process's index among the ranks on the same machine (which GPU it should use)."""
        if self.comm is None:
            return 0
        return self.comm.Split_type(self._mpi.COMM_TYPE_SHARED).Get_rank()


WORLD_OF_ONE = World()

_world = None


def launched_size(environ=None):
    """How many processes the launcher (mpiexec, srun) says it started; None when not started by one."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected the number of MPI processes") from None
    return None


def init():
    """The world this process belongs to (created once; later calls return the same).

    Started by ``mpiexec`` (or ``RESNET_NP_MPI=1``): MPI's ``COMM_WORLD``,
    and from then on an uncaught exception on any rank prints the rank and
    the traceback and aborts the whole job. Otherwise a world of one, and
    mpi4py is not even imported.
    """
    global _world
    if _world is not None:
        return _world
    size = launched_size()
    if size is None and os.environ.get("RESNET_NP_MPI") != "1":
        _world = WORLD_OF_ONE
        return _world
    for name, value in MPICH_YIELD.items():
        os.environ.setdefault(name, value)  # read by MPI_Init, inside the import below
    try:
        from mpi4py import MPI
    except ImportError as e:
        if size is not None and size > 1:
            raise RuntimeError(f"this process is one of {size} started by mpiexec, but mpi4py is not installed "
                               f"({e}): pip install -e '.[distributed]'") from None
        _world = WORLD_OF_ONE
        return _world
    _world = World(MPI.COMM_WORLD, MPI)
    if _world.size > 1:
        _abort_on_uncaught_exceptions(_world)
    return _world


def _abort_on_uncaught_exceptions(world):
    """Make an uncaught exception end the whole job, naming the rank, instead of hanging it.

    Python would print the traceback and exit; at exit mpi4py calls
    ``MPI_Finalize``, which waits for the other ranks — and they wait in
    their next collective for this one. ``sys.excepthook`` runs before that.
    """
    previous = sys.excepthook

    def hook(kind, value, tb):
        print(f"rank {world.rank} of {world.size} failed:", file=sys.stderr)
        previous(kind, value, tb)
        world.abort(1, f"rank {world.rank} of {world.size}: {kind.__name__}: {value}; aborting every rank")

    sys.excepthook = hook


def describe_ranks(world):
    """"rank 0: pid 123 on host, rank 1: pid 124 on host": to match mpiexec's report of a dead process (a PID)."""
    import socket
    where = world.allgather_object((os.getpid(), socket.gethostname()))
    return ", ".join(f"rank {r}: pid {pid} on {host}" for r, (pid, host) in enumerate(where))


def check_not_launched(command):
    """Refuse to run ``command`` as several processes without ``--distributed``.

    Each process would train alone on the whole data set, and all of them
    would write the same checkpoint file.
    """
    size = launched_size()
    if size is not None and size > 1:
        raise ValueError(f"{command} was started as {size} processes (mpiexec -n {size}) without --distributed: "
                         f"each would train alone on all the data and they would all write the same "
                         f"checkpoint; add --distributed{' (train only)' if command != 'train' else ''}, "
                         f"or run it without mpiexec")


def check_batch_size(batch_size, world):
    """The per-rank batch of a global ``batch_size``; a ValueError unless it divides evenly."""
    if batch_size % world.size:
        lower, upper = batch_size - batch_size % world.size, batch_size + world.size - batch_size % world.size
        raise ValueError(f"--batch-size {batch_size} is the global batch (all ranks together) and must be a "
                         f"multiple of the number of processes, {world.size}: try {lower or upper} or {upper}")
    return batch_size // world.size


def use_local_gpu(world):
    """Make this rank use GPU ``local_rank`` (mod the GPUs visible): one GPU per rank on each machine."""
    cupy = backend.get_array_module() if backend.current() == "cupy" else None
    if cupy is None:
        return None
    device = world.local_rank % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(device).use()
    return device


# ----------------------------------------------------------------------------
# Same model everywhere
# ----------------------------------------------------------------------------

def _signature(model):
    """What must agree between ranks: the class, and each tensor's key, shape, dtype and trainability."""
    rows = []
    for key, value in model._state_order():
        array = value.data if isinstance(value, Parameter) else value
        trainable = value.requires_grad if isinstance(value, Parameter) else None
        rows.append((key, tuple(array.shape), str(array.dtype), trainable))
    return type(model).__name__, getattr(model, "arch", None), rows


def check_same_model(world, model):
    """A ValueError, raised alike on every rank, unless every rank built the same model.

    A rank with another model would send gradient buffers of other sizes,
    and the all-reduce would mix unrelated numbers or wait forever.
    """
    signatures = world.allgather_object(_signature(model))
    mine = signatures[0]
    for rank, theirs in enumerate(signatures[1:], start=1):
        if theirs == mine:
            continue
        problems = []
        if theirs[:2] != mine[:2]:
            problems.append(f"class/architecture {mine[0]}/{mine[1]} on rank 0, {theirs[0]}/{theirs[1]} on rank {rank}")
        ours = {row[0]: row[1:] for row in mine[2]}
        other = {row[0]: row[1:] for row in theirs[2]}
        for key in [k for k in ours if k not in other][:3]:
            problems.append(f"{key} only on rank 0")
        for key in [k for k in other if k not in ours][:3]:
            problems.append(f"{key} only on rank {rank}")
        for key in [k for k in ours if k in other and ours[k] != other[k]][:5]:
            (s0, d0, t0), (s1, d1, t1) = ours[key], other[key]
            problems.append(f"{key}: shape {s0}, {d0}, trainable {t0} on rank 0; shape {s1}, {d1}, "
                            f"trainable {t1} on rank {rank}")
        if not problems:
            problems.append("the tensors come in another order")
        raise ValueError(f"DistributedDataParallel: the model on rank {rank} differs from rank 0's: "
                         + "; ".join(problems) + ". Every rank must build the same network (same --model, "
                         "--shortcut, dataset, dtype and frozen layers)")


def broadcast_state(world, model):
    """Copy rank 0's parameters and buffers to every rank (in place)."""
    for _, value in model._state_order():
        world.broadcast_(value.data if isinstance(value, Parameter) else value)


# ----------------------------------------------------------------------------
# DistributedDataParallel
# ----------------------------------------------------------------------------

def _own_parameters(module):
    return [v for v in vars(module).values() if isinstance(v, Parameter)]


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


class DistributedDataParallel:
    """``model`` trained on every rank at once: after ``backward`` each rank holds the average gradient.

    Use it where the model was used; ``forward``, ``backward``,
    ``parameters``, ``named_parameters``, ``state_dict``,
    ``load_state_dict``, ``train``, ``eval``, ``zero_grad`` and
    ``modules`` are the model's own (same keys: no "module." prefix);
    ``module`` is the model itself.

    At construction every rank checks that all ranks built the same model
    (a ValueError naming the first differences otherwise), then copies rank
    0's parameters and buffers: every rank starts from the same weights.

    ``backward(dout)`` runs the model's backward. The trainable parameters
    are grouped into buckets of about ``bucket_mb`` megabytes, in the order
    backward produces their gradients (the parameter list reversed at
    first; from the second step on, the order the first backward actually
    delivered them, as rank 0 saw it). Each parameter-owning layer reports
    when its backward is done; when every gradient of the next bucket
    exists, the bucket is flattened into one buffer and a non-blocking
    all-reduce (``MPI_Iallreduce``) starts, while backward continues with
    the layers below. After the model's backward, the remaining buckets are
    sent, all are awaited, and each gradient is overwritten with the sum
    divided by the number of ranks. Frozen parameters
    (``requires_grad=False``) are not sent.

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
        self.module = module
        self.world = world if world is not None else init()
        self.bucket_bytes = int(bucket_mb * 2 ** 20)
        check_same_model(self.world, module)
        broadcast_state(self.world, module)
        self.buckets = []
        self._layout = None          # the trainable parameters the buckets were made for
        self._slot = {}              # id(parameter) -> index of its bucket
        self._hooked = set()         # ids of the modules whose backward reports to us
        self._arrivals = None        # the order gradients arrived in, during the first backward
        self._armed = False
        self._next = 0
        self._ready = set()
        self._start = 0.0
        self.backward_seconds = self.wait_seconds = 0.0

    # -- the model's own interface ------------------------------------------------

    def __call__(self, *inputs):
        return self.module(*inputs)

    def forward(self, *inputs):
        return self.module.forward(*inputs)

    def parameters(self):
        return self.module.parameters()

    def named_parameters(self, prefix=""):
        return self.module.named_parameters(prefix)

    def named_buffers(self, prefix=""):
        return self.module.named_buffers(prefix)

    def modules(self):
        return self.module.modules()

    def named_modules(self, prefix=""):
        return self.module.named_modules(prefix)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict=True):
        return self.module.load_state_dict(state_dict, strict)

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def training(self):
        return self.module.training

    def zero_grad(self):
        self.module.zero_grad()

    def __repr__(self):
        return f"DistributedDataParallel({self.world}, {len(self.buckets)} buckets,\n  {self.module!r})"

    # -- backward with the all-reduce ----------------------------------------------

    def backward(self, dout):
        """The model's backward; returns dL/dx. Every rank must call it, the same number of times."""
        self._prepare()
        self._armed = True
        try:
            dx = self.module.backward(dout)
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
            self._make_buckets(trainable[::-1])
            self._hook_new_modules()
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

    def _hook_new_modules(self):
        """Put a reporting wrapper in front of ``backward`` of each module that owns a parameter.

        The layers call their sub-modules' ``module.backward(...)``, which
        finds an attribute set on the object before the class's method (as
        ``nancheck`` does): this is the backward hook that PyTorch's DDP
        gets from autograd. In a layer that owns parameters, they are
        complete once its backward returns.
        """
        for module in self.module.modules():
            if id(module) in self._hooked or not _own_parameters(module):
                continue
            self._hooked.add(id(module))
            inner = module.backward

            def reporting_backward(dout, module=module, inner=inner, **options):  # options: need_input_grad
                dx = inner(dout, **options)
                if self._armed:
                    self._gradients_ready(module)
                return dx

            module.backward = reporting_backward

    def _gradients_ready(self, module):
        for p in _own_parameters(module):
            slot = self._slot.get(id(p))
            if slot is None:
                continue  # frozen: not sent
            if id(p) in self._ready:
                raise RuntimeError(f"DistributedDataParallel: a parameter of {type(module).__name__} received its "
                                   "gradient twice in one backward pass (a module used twice in forward?); shared "
                                   "weights are not supported: its first gradient may already have been sent")
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


# ----------------------------------------------------------------------------
# SyncBatchNorm
# ----------------------------------------------------------------------------

def _channel_sum(a, b=None):
    """Per-channel sum over N, H, W of ``a`` (or of ``a * b``), as one einsum over an (N, C, H*W) view."""
    xp = get_array_module(a)
    N, C, H, W = a.shape
    if b is None:
        return xp.einsum("ncp->c", a.reshape(N, C, H * W))
    return xp.einsum("ncp,ncp->c", a.reshape(N, C, H * W), b.reshape(N, C, H * W))


def combine_moments(counts, means, m2s):
    """(M, mean, var) of the union of groups given by their counts, means and sums of squared deviations.

    Chan et al.'s pairwise formula, for any number of groups::

        M    = sum_r M_r
        mean = sum_r M_r mean_r / M
        M2   = sum_r [ M2_r + M_r (mean_r - mean)^2 ]     var = M2 / M

    Unlike sum(x^2)/M - mean^2 it subtracts no two large numbers, so float32
    activations with a large mean keep their variance. The arrays are
    (ranks,) and (ranks, C); the sums run in rank order, the same on every
    rank, so every rank gets the same bits.
    """
    M = counts.sum()
    mean = (counts[:, None] * means).sum(axis=0) / M
    m2 = (m2s + counts[:, None] * (means - mean) ** 2).sum(axis=0)
    return M, mean, m2 / M


class SyncBatchNorm(BatchNorm2d):
    """BatchNorm2d whose batch is the union of every rank's batch.

    Train mode, forward — each rank has M_r = N_r*H*W values per channel:

        local:  mean_r = sum(x)/M_r,  M2_r = sum((x - mean_r)^2)
        one all-gather of (M_r, mean_r, M2_r), combined in rank order (``combine_moments``):
                M, mean, var over all M = sum_r M_r values
        x_hat = (x - mean) / sqrt(var + eps)          out = weight * x_hat + bias

    and the running statistics move exactly as one process's would over the
    global batch (unbiased variance with the global M).

    Backward. With g = dL/dout, where L is the sum of the ranks' losses,
    and sums over every value of the channel on every rank:

        dx = weight / sqrt(var + eps) * (g - sum(g)/M - x_hat * sum(g * x_hat)/M)

    The mean and variance depend on every rank's x, so x's gradient needs
    the two per-channel sums of *all* ranks: one all-reduce of 2C numbers.
    The parameter gradients stay local, dweight = sum_local(g * x_hat) and
    dbias = sum_local(g); DistributedDataParallel averages them with the
    others (the average of the ranks' sums is the gradient of the mean of
    the ranks' losses, like every other gradient).

    Eval mode (running statistics) and a world of one are plain BatchNorm2d.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, world=None):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.world = world
        self._synced = False

    def _get_world(self):
        if self.world is None:
            self.world = init()
        return self.world

    def forward(self, x):
        world = self._get_world()
        self._synced = self.training and world.size > 1
        if not self._synced:
            return super().forward(x)
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)", like=self.weight.data)
        check_dim(self, x, 1, self.num_features, "channels")
        xp = get_array_module(x)
        N, C, H, W = x.shape
        m = N * H * W
        local_mean = _channel_sum(x) / max(m, 1)  # a rank with an empty batch contributes nothing
        x_centered = x - local_mean.reshape(1, C, 1, 1)
        local_m2 = _channel_sum(x_centered, x_centered)
        f64 = xp.float64
        stats = world.allgather(xp.concatenate([xp.full(1, m, dtype=f64), local_mean.astype(f64),
                                                local_m2.astype(f64)]))
        M, mean, var = combine_moments(stats[:, 0], stats[:, 1:1 + C], stats[:, 1 + C:])
        M = int(M)
        if M < 2:
            raise ValueError(f"{layer_name(self)}: train mode needs more than 1 value per channel over all "
                             f"{world.size} ranks, got {M}")
        mean, var = mean.astype(x.dtype), var.astype(x.dtype)
        x_centered -= (mean - local_mean).reshape(1, C, 1, 1)  # now centred on the global mean
        self._track(mean, var, M)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        out = x_centered * (self.weight.data * inv_std).reshape(1, C, 1, 1)
        out += self.bias.data.reshape(1, C, 1, 1)
        self._cache = (x_centered, inv_std, M)
        return out

    def _track(self, mean, var, M):
        """The running statistics, from the global batch: PyTorch's update, with M over all ranks."""
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean *= 1.0 - factor
        self.running_mean += factor * mean
        self.running_var *= 1.0 - factor
        self.running_var += factor * var * (M / (M - 1))

    def backward(self, dout):
        if not self._synced:
            return super().backward(dout)
        check_forward_done(self, self._cache)
        x_centered, inv_std, M = self._cache
        check_dout(self, dout, x_centered.shape)
        xp = get_array_module(dout)
        C = dout.shape[1]
        dbias = _channel_sum(dout)                                  # sum_local(g)
        dweight = _channel_sum(dout, x_centered) * inv_std          # sum_local(g * x_hat)
        sums = self._get_world().allreduce(xp.concatenate([dbias, dweight]))
        sum_g, sum_g_xhat = sums[:C], sums[C:]
        dx = dout - (sum_g / M).reshape(1, C, 1, 1)
        dx -= x_centered * (inv_std * sum_g_xhat / M).reshape(1, C, 1, 1)
        dx *= (self.weight.data * inv_std).reshape(1, C, 1, 1)
        if self.weight.requires_grad:
            self.weight.accumulate_grad(dweight)
        if self.bias.requires_grad:
            self.bias.accumulate_grad(dbias)
        return dx


def _synced_copy(bn, world):
    sync = SyncBatchNorm(bn.num_features, eps=bn.eps, momentum=bn.momentum, world=world)
    # The same Parameter objects and arrays: an optimizer made before still updates them.
    sync.weight, sync.bias = bn.weight, bn.bias
    for name in bn._buffer_names:
        sync.register_buffer(name, getattr(bn, name))
    sync.training, sync.keep_eval = bn.training, bn.keep_eval
    return sync


def convert_sync_batchnorm(model, world=None):
    """Replace every BatchNorm2d in ``model`` by a SyncBatchNorm holding the same parameters and buffers.

    The state-dict keys, the order and the arrays stay the same. Returns the
    model (a new module when ``model`` itself is a BatchNorm2d).
    """
    world = world if world is not None else init()
    if isinstance(model, BatchNorm2d) and not isinstance(model, SyncBatchNorm):
        return _synced_copy(model, world)
    for module in list(model.modules()):
        for name, child in list(vars(module).items()):
            if isinstance(child, BatchNorm2d) and not isinstance(child, SyncBatchNorm):
                setattr(module, name, _synced_copy(child, world))
    return model


def unwrap(model):
    """The model inside a DistributedDataParallel (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
