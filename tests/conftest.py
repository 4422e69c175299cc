import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The suite runs many tiny batch-1 ops: one thread avoids oversubscription on small CI boxes.
torch.set_num_threads(1)

TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param
