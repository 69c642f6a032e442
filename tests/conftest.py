import os

import pytest

# Tests run with one torch thread per process, as workers do, so suites don't oversubscribe 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # fake_envs
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
