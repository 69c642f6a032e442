import os
import sys
from pathlib import Path

import pytest

# Tests run with one torch thread per process, as workers do, so suites don't oversubscribe 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# tests/fake_envs.py is importable as `fake_envs`, here and in subprocesses and spawned workers.
HERE = str(Path(__file__).parent)
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield
