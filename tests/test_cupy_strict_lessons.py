"""The lessons written for either device run with the CuPy stand-in as their backend (``--quick``).

With ``RESNET_NP_BACKEND=cupy-strict`` every model and batch a lesson makes
through the backend lives on ``resnet_np.cupy_strict`` (CuPy's rules
emulated on NumPy, not a GPU). Lesson 11 then runs its GPU part there and
skips only its GPU-faster-than-CPU assertion (``backend.is_stand_in()``).

The other lessons build their examples as NumPy arrays on purpose (they
teach the arithmetic on the host, and compare with ``np.testing``) or take
minutes (14, 15): they run on NumPy in tests/test_lessons.py only.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

ON_THE_STAND_IN = ["01_arrays_and_xp", "08_training_mnist", "09_degradation", "11_gpu_cupy"]
NUMPY_ONLY = {  # lesson -> why it is not run on the stand-in
    "02_conv_im2col": "NumPy examples by design (im2col on host arrays)",
    "03_conv_backward": "NumPy examples by design",
    "04_batchnorm": "NumPy examples by design",
    "05_relu_and_add": "NumPy examples by design",
    "06_basic_block": "NumPy examples by design",
    "07_bottleneck_and_resnet": "NumPy examples by design",
    "10_finetuning": "compares weights with np.testing on the host",
    "12_after_resnet": "NumPy examples by design",
    "13_data_parallel": "NumPy examples by design (and MPI: tests/test_cupy_strict_mpi.py covers the device path)",
    "14_your_own_images": "about 6 minutes on the stand-in",
    "15_input_gradient": "runs on the stand-in (checked by hand, 62 s on a loaded 2-core VM): too long for CI",
}


def test_the_lists_name_real_lessons():
    """A renamed or removed lesson is noticed here (a new one is not run on the stand-in until listed)."""
    lessons = {p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py")}
    assert set(ON_THE_STAND_IN) | set(NUMPY_ONLY) <= lessons, (set(ON_THE_STAND_IN) | set(NUMPY_ONLY)) - lessons


@pytest.mark.parametrize("lesson", ON_THE_STAND_IN)
def test_lesson_runs_on_the_stand_in(lesson, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", RESNET_NP_BACKEND="cupy-strict")
    result = subprocess.run([sys.executable, str(ROOT / "lessons" / f"{lesson}.py"), "--quick", "--out",
                             str(tmp_path)], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert list(tmp_path.glob("*.png")), "the lesson saved no figure"
    if lesson == "11_gpu_cupy":
        assert "the strict CuPy stand-in" in result.stdout and "no claim about GPU speed" in result.stdout
