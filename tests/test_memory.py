"""resnet_np.memory: freed arrays stay with the process, so the next step does not fault its pages in again."""

import ctypes
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Allocate eight 8 MB arrays, then free them all, 40 times over — as a training
# step does with its layers' outputs — and count the page faults of the last 20 rounds.
PROBE = """
import os, resource, sys
if sys.argv[1] == "keep":
    import resnet_np
    assert resnet_np.memory.keep_freed_memory() is True
else:
    os.environ["RESNET_NP_KEEP_FREED_MEMORY"] = "0"
    import resnet_np
    assert resnet_np.memory.keep_freed_memory() is False
import numpy as np
def rounds(k):
    for _ in range(k):
        arrays = [np.ones(2 ** 21, dtype=np.float32) for _ in range(8)]   # 8 MB each, every page written
        del arrays
rounds(20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt exists only in glibc (Linux); elsewhere keep_freed_memory does nothing")
def test_freed_memory_is_reused_without_new_page_faults():
    kept, default = faults("keep"), faults("default")
    # With glibc's defaults the 64 MB freed at the end of a round go back to the
    # kernel: at least 4 huge pages per array (2,048 small ones without
    # transparent huge pages) fault in again in every round.
    assert default >= 20 * 8 * 4, f"the default allocator was expected to fault each round, got {default} faults"
    assert kept <= 10, f"freed memory was handed back to the kernel: {kept} page faults in 20 rounds"
