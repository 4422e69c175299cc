"""Calibration of a user: body shape β, the head-to-headset offset ``T_HMD``, the floor.

The paper takes β and ``T_HMD`` as known "from an offline calibration phase"; this package
is that phase::

    from calibration import Profile, ProfileStore              # the file format, per session
    from calibration import fit_known, fit_capture             # numbers / a capture -> Profile
    from calibration import listen, read_recording, find_hold  # captures and the hold
    from calibration import write_calibration_motion           # a synthetic user's motion

Modules: :mod:`~calibration.profile` (JSON profiles, :class:`ProfileStore`),
:mod:`~calibration.capture` (ZeroMQ / recording capture, hold detection),
:mod:`~calibration.fit` (shape, T_HMD and floor estimation), :mod:`~calibration.pose` (the
calibration motion). Attributes load lazily: importing :mod:`calibration.profile` (as the
server does) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Profile": "calibration.profile",
    "ProfileError": "calibration.profile",
    "ProfileStore": "calibration.profile",
    "Capture": "calibration.capture",
    "CaptureError": "calibration.capture",
    "CalibrationRefused": "calibration.capture",
    "HoldCriteria": "calibration.capture",
    "find_hold": "calibration.capture",
    "listen": "calibration.capture",
    "read_recording": "calibration.capture",
    "FitOptions": "calibration.fit",
    "body_measurements": "calibration.fit",
    "estimate_hmd_offset": "calibration.fit",
    "fit_capture": "calibration.fit",
    "fit_known": "calibration.fit",
    "CalibrationMotionConfig": "calibration.pose",
    "calibration_motion": "calibration.pose",
    "write_calibration_motion": "calibration.pose",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'calibration' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return __all__
