"""Rotation and rigid-transform helpers shared by the whole project."""

from tracker.geometry.rotations import *  # noqa: F403
from tracker.geometry.rotations import __all__ as _rot_all
from tracker.geometry.transforms import *  # noqa: F403
from tracker.geometry.transforms import __all__ as _tf_all

__all__ = [*_rot_all, *_tf_all]
