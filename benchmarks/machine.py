"""A description of the machine, written at the top of every results file."""

import io
import os
import pathlib
import platform
from contextlib import redirect_stdout

import numpy as np


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def blas_info():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            np.show_config()
        return buffer.getvalue().split("\n")[0]


def blas_kernel():
    """The kernel OpenBLAS chose for this CPU (Haswell, SkylakeX, Zen, ...), as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
        kernels = [i.get("architecture") for i in threadpool_info() if i.get("user_api") == "blas"]
    except Exception:
        return None
    return ", ".join(k for k in kernels if k) or None


def describe():
    kernel = blas_kernel()
    return (f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"NumPy {np.__version__} ({blas_info()}{f', kernel {kernel}' if kernel else ''})")


def write_results(path, text):
    """Print ``text`` and write it to ``path`` atomically (a temporary file, then a rename)."""
    from resnet_np.atomic import write_atomically

    print(text)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: f.write(text.encode()))
