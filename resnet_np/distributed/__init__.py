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

The package, one concept a file:

* ``world.py`` — the processes: ``init()`` gives the ``World`` (``rank``,
  ``size``, ``comm``, mpi4py's ``COMM_WORLD``, and its collectives). Without
  ``mpiexec``, or without mpi4py, it is a world of one (``WORLD_OF_ONE``),
  and every script runs unchanged alone. Faults: a rank that raises prints
  its rank and error and calls ``MPI_Abort``, which ends every process
  (without it the others would wait for it forever inside a collective).
* ``replicas.py`` — the same model everywhere: every rank checks that all
  built the same network (``check_same_model``) and takes rank 0's weights
  (``broadcast_state``).
* ``data_parallel.py`` — ``DistributedDataParallel(model)``: the model with
  its own ``forward``, ``parameters`` and ``state_dict``, whose ``backward``
  leaves the averaged gradients, sent in buckets while backward is still
  running (it learns that a gradient is complete from a hook on each
  parameter: ``Parameter.register_post_accumulate_grad_hook``).
* ``sync_batchnorm.py`` — ``SyncBatchNorm`` and ``convert_sync_batchnorm``:
  batch statistics over the ranks' images together, as one process would
  compute them.

MPICH, while it waits inside a call, polls in a loop and keeps a core 100 %
busy. On a machine with as many cores as ranks (or fewer, or shared) that
steals the core from the rank that is still computing, or from whoever
else uses the machine. ``init()`` therefore sets ``MPICH_YIELD`` in the
environment before MPI starts, unless the variable is already set: a
waiting rank then sleeps between polls. It costs latency (a small
all-reduce of 32 numbers on 2 ranks takes about 0.2 ms), measured in
``benchmarks/results/distributed.md``; on a dedicated cluster node export
``MPIR_CVAR_ENABLE_HEAVY_YIELD=0`` to keep MPICH's spinning.

On the GPU (CuPy arrays) the same code runs. With a CUDA-aware MPI, set
``RESNET_NP_MPI_GPU_AWARE=1`` and device arrays go to MPI as they are (the
stream is synchronised first, so MPI never reads a gradient still being
computed); otherwise each buffer is staged through a host copy. Each rank
should use its own GPU: ``use_local_gpu(world)``.
"""

from .data_parallel import DEFAULT_BUCKET_MB, DistributedDataParallel, unwrap
from .replicas import broadcast_state, check_same_model
from .sync_batchnorm import SyncBatchNorm, combine_moments, convert_sync_batchnorm
from .world import (
    ABORT_GRACE_SECONDS,
    LAUNCHER_SIZE_VARIABLES,
    MPICH_YIELD,
    WORLD_OF_ONE,
    World,
    check_batch_size,
    check_not_launched,
    describe_ranks,
    init,
    launched_size,
    use_local_gpu,
)

__all__ = [
    "ABORT_GRACE_SECONDS", "DEFAULT_BUCKET_MB", "LAUNCHER_SIZE_VARIABLES", "MPICH_YIELD", "WORLD_OF_ONE",
    "DistributedDataParallel", "SyncBatchNorm", "World", "broadcast_state", "check_batch_size", "check_not_launched",
    "check_same_model", "combine_moments", "convert_sync_batchnorm", "describe_ranks", "init", "launched_size",
    "unwrap", "use_local_gpu",
]
