"""The world: the processes of one job, and what they do together (collectives).

``mpiexec -n R`` starts the same program R times; each copy is a *rank*
(0 ... R - 1) of a *world* of R processes. ``init()`` gives this process's
``World``: its ``rank``, the ``size``, mpi4py's ``comm`` and the collectives
the rest of the package uses (broadcast, all-reduce, all-gather, and the
non-blocking all-reduce that lets gradients travel while backward runs).
Without ``mpiexec``, or without mpi4py, it is ``WORLD_OF_ONE``, whose
collectives do what they would do with a single process.

Also here: how a launched job is checked (``launched_size``,
``check_not_launched``, ``check_batch_size``), which GPU a rank takes
(``use_local_gpu``), and the fault rule: an uncaught exception on any rank
ends the whole job (``MPI_Abort``) instead of leaving the others waiting.
See the package docstring for MPICH's busy waiting and CUDA-aware MPI.
"""

import os
import sys
import time

from .. import backend
from ..backend import get_array_module, is_cupy_array, to_numpy

# What makes a waiting MPICH rank sleep instead of spin (see the package docstring).
MPICH_YIELD = {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}

# How long a failing rank waits, after printing why, before MPI_Abort ends every process.
ABORT_GRACE_SECONDS = 0.5

# Environment variables by which launchers tell a process how many were started.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


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
