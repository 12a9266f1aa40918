"""cupy.cuda of the stand-in: one pretend device; ``synchronize`` counts a synchronisation.

Only what resnet_np and its benchmarks call: ``Device``, ``runtime.getDeviceCount``/``getDevice``/
``deviceSynchronize``/``getDeviceProperties``, ``Event``, ``get_elapsed_time``, ``Stream``.
Timings taken with these events are CPU times of NumPy: they say nothing about a GPU.
"""

import time

from ._core import _record


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise ValueError(f"cupy_strict: the stand-in has one device (0), not {self.id}")

    def use(self):
        pass

    def synchronize(self):
        _record("sync")

    @property
    def compute_capability(self):
        return "00"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return "<CUDA Device 0 (cupy_strict stand-in)>"


class runtime:
    """The few CUDA runtime calls the project uses, as static methods (``cupy.cuda.runtime.x()``)."""

    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDevice():
        return 0

    @staticmethod
    def deviceSynchronize():
        _record("sync")

    @staticmethod
    def getDeviceProperties(device):
        return {"name": b"cupy_strict stand-in (NumPy on the CPU)", "totalGlobalMem": 0}

    @staticmethod
    def runtimeGetVersion():
        return 0


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        _record("sync")


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two recorded events."""
    return (end_event.time - start_event.time) * 1000.0


class Stream:
    def __init__(self, null=False, non_blocking=False, ptds=False):
        pass

    def synchronize(self):
        _record("sync")

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream(null=True)


def get_current_stream():
    return Stream.null


def is_available():
    return True
