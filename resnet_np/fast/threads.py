"""Using every core for the work NumPy does on one.

NumPy runs a large matrix product on all cores (its BLAS is
multithreaded), but a copy such as im2col — and every elementwise
operation — on one. On a 2-core machine that leaves half of the processor
idle for a good part of a convolution. A convolution, though, splits into
parts that do not depend on each other: the images of a batch. So the
layers hand each thread a contiguous share of the images (``for_each_part``:
the calling thread works on the last share itself, the helper threads on the
others — one hand-off fewer per call, 10 % of a ResNet-20 step here). NumPy
releases Python's global interpreter lock inside its copies and products,
so the threads really do run at the same time.

BLAS is then told to use one thread per call: otherwise each of our
threads would start BLAS threads of its own, and twice as many threads as
cores would fight over them. ``threadpoolctl`` is what sets that limit (it
knows how to talk to OpenBLAS, MKL and BLIS); where it is missing, the
parts simply run one after the other. Switching BLAS between one thread and
several around every layer costs more than it saves (its idle threads wake
up and spin: a 2-core ResNet-20 step took 0.45 s instead of 0.31 s), so a
training loop holds the limit for as long as it runs: inside
``resnet_np.fast.tuned()`` (which ``fit`` uses) BLAS stays at one thread,
and gets its threads back when the block ends. (The plain layers, which
share out no images, run there on one core: their many small products per
image run no faster on BLAS's threads, and slower on a busy machine, where
the threads spin waiting for each other.) Outside ``tuned()``,
``for_each_part`` sets the limit for the duration of its own call only:
nothing is left changed in the process.

The result does not depend on the timing of the threads: each part writes
its own slice of the output, and partial sums (a weight gradient) are added
in the order of the parts. Only the number of threads changes the order of
those additions, so results can differ in the last bits between a 1-thread
and a 2-thread run, never between two runs with the same setting.

``set_num_threads(n)`` (``resnet_np.fast.set_num_threads``; or the environment variable ``RESNET_NP_NUM_THREADS``)
chooses how many threads; the default is the number of cores this process
may use. On the GPU (CuPy) nothing of this applies: one call does the whole
batch.
"""

import os
import threading

from ..backend import host

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - threadpoolctl is a dependency; this keeps a bare install working
    ThreadpoolController = None

_num_threads = None
_helpers = []        # the threads that take the parts but the last, started on first use (``Helper``)
_helpers_busy = threading.Lock()   # held while a call hands parts to the helpers
_controller = None  # threadpoolctl's view of the BLAS libraries, found once
_blas_limit = None  # inside tuned(): threadpoolctl's record of BLAS's threads before we held them at one


def _default_num_threads():
    if os.environ.get("RESNET_NP_NUM_THREADS"):
        return int(os.environ["RESNET_NP_NUM_THREADS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads():
    """How many threads the layers use on the CPU."""
    global _num_threads
    if _num_threads is None:
        _num_threads = max(1, _default_num_threads())
    return _num_threads


def set_num_threads(n):
    """Use ``n`` threads (1: everything in the calling thread, BLAS as configured)."""
    global _num_threads, _blas_limit
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    with _helpers_busy:
        for helper in _helpers:
            helper.stop()
        _helpers.clear()
    if _blas_limit is not None:  # inside tuned(): BLAS at one thread only while we have several
        release_blas()
        hold_blas_at_one_thread()


def _blas_controller():
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def hold_blas_at_one_thread():
    """BLAS at one thread until ``release_blas()`` (used by ``tuned()``; nothing to do with one thread of ours)."""
    global _blas_limit
    if _blas_limit is None and get_num_threads() > 1 and ThreadpoolController is not None:
        _blas_limit = _blas_controller().limit(limits=1, user_api="blas")


def release_blas():
    """Give BLAS back the threads it had before ``hold_blas_at_one_thread``."""
    global _blas_limit
    if _blas_limit is not None:
        _blas_limit.restore_original_limits()
        _blas_limit = None


# A share smaller than this many bytes is not worth handing to a thread: waking a helper costs more than
# a pass over less than a megabyte saves. Measured here (2 cores, batch 32): batch norm's forward pass over
# 0.5-1 MB maps took 0.23-0.39 ms on one thread against 0.65-0.77 ms shared out at the old 256 kB; the
# ResNet-20 step at batch 32 took 0.15-0.17 s against 0.17-0.19 s.
MIN_PART_BYTES = 2 ** 20


def min_images(x):
    """How many images of the batch ``x`` (N, ...) make a share worth a thread."""
    per_image = x[0].nbytes if len(x) else 1
    return max(1, MIN_PART_BYTES // max(per_image, 1))


# A thread's share of an elementwise pass goes through in pieces of about this many bytes: small enough to stay
# in the cache from one pass over a piece to the next (batch norm's scale and shift, ReLU's mask and max), large
# enough that a small batch's share is one piece (pieces of 256 kB made the batch-32 step slower here: every
# NumPy call more is one more wait for the interpreter lock while the other thread runs Python).
PIECE_BYTES = 2 ** 20


def image_bytes(x):
    """The bytes of one image of the batch ``x`` (N, ...) (0 for an empty batch)."""
    return x.nbytes // len(x) if len(x) else 0


def pieces(n0, n1, per_image_bytes):
    """range(n0, n1) cut into (start, stop) pieces of about ``PIECE_BYTES`` each (at least one image)."""
    step = max(1, PIECE_BYTES // max(per_image_bytes, 1))
    return [(i, min(i + step, n1)) for i in range(n0, n1, step)]


class Helper:
    """A thread that runs one part of a call at a time: ``start(fn, n0, n1)``, then ``join()`` for its result.

    Two locks hand the part over and back (what a thread pool does with a
    future, a queue and a condition, in a tenth of the Python calls: a
    ResNet-20 step at batch 32 hands out some 200 parts).
    """

    def __init__(self):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task = self._result = self._error = None
        self.lost = False   # a join() interrupted (Ctrl-C) while the part still ran: never handed a part again
        threading.Thread(target=self._run, name="resnet_np", daemon=True).start()

    def _run(self):
        while True:
            self._go.acquire()
            if self._task is None:   # stop()
                return
            fn, n0, n1, errors = self._task
            try:
                # NumPy's error state is per thread: the part runs under the caller's, as it would in one thread
                # (a diverging run's overflows, which the command line silences, stay silent here too).
                with host.errstate(**errors):
                    self._result, self._error = fn(n0, n1), None
            except BaseException as error:  # handed to the caller by join()
                self._result, self._error = None, error
            self._task = None
            self._done.release()

    def start(self, fn, n0, n1):
        self._task = (fn, n0, n1, host.geterr())
        self._go.release()

    def join(self):
        try:
            self._done.acquire()
        except BaseException:
            self.lost = True
            raise
        result, error, self._result, self._error = self._result, self._error, None, None
        if error is not None:
            raise error
        return result

    def stop(self):
        self._task = None
        self._go.release()


def _forget_helpers():
    """In a child process made by fork, the helpers' threads do not exist: start new ones when needed."""
    global _helpers_busy
    _helpers.clear()
    _helpers_busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def for_each_part(fn, N, min_part=1, xp=None):
    """Call ``fn(n0, n1)`` on contiguous parts of range(N), in parallel; return the results in order.

    At most one part per thread, each at least ``min_part`` long (a part
    too small is not worth a thread). With one thread, threadpoolctl
    missing, or ``xp`` not NumPy (a GPU), this is simply ``[fn(0, N)]``.
    """
    threads = min(get_num_threads(), max(1, N // max(min_part, 1)))
    if threads == 1 or ThreadpoolController is None or (xp is not None and xp.__name__ != "numpy"):
        return [fn(0, N)]
    if _blas_limit is not None:   # inside tuned(): BLAS is already at one thread
        return _run_parts(fn, N, threads)
    with _blas_controller().limit(limits=1, user_api="blas"):   # for this call only
        return _run_parts(fn, N, threads)


def _run_parts(fn, N, threads):
    bounds = [N * t // threads for t in range(threads + 1)]
    if not _helpers_busy.acquire(blocking=False):
        # The helpers are taken (a part calling for_each_part, or two threads of the user's running layers):
        # the same parts one after the other, in this thread — the same results.
        return [fn(bounds[t], bounds[t + 1]) for t in range(threads)]
    try:
        while len(_helpers) < threads - 1:
            _helpers.append(Helper())
        for t in range(threads - 1):
            _helpers[t].start(fn, bounds[t], bounds[t + 1])
        # The calling thread does the last part itself rather than wait idle.
        error = last = None
        try:
            last = fn(bounds[threads - 1], bounds[threads])
        except BaseException as e:   # every helper is joined before it is raised: they are free for the next call
            error = e
        results = []
        for helper in _helpers[:threads - 1]:
            try:
                results.append(helper.join())
            except BaseException as e:
                error = error or e
        if error is not None:
            _helpers[:] = [helper for helper in _helpers if not helper.lost]
            raise error
        return results + [last]
    finally:
        _helpers_busy.release()
