"""The bundled model fits a user standing still standing (tools/stand_still.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from stand_still import LIMITS, measure  # noqa: E402


def test_the_bundled_model_fits_a_user_standing_still_standing():
    from tracker.fitter.checkpoint import load_fitter

    r = measure(load_fitter(), "eager", seconds=2.0)
    assert r["frames"] == 180
    for key, limit in LIMITS.items():
        assert r[key] <= limit, (key, r)
