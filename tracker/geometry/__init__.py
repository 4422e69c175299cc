"""Rotation and rigid-transform helpers shared by the whole project.

``tracker.geometry.rotations`` and ``tracker.geometry.transforms`` (torch, any batch shape,
differentiable) are re-exported here on first use, so that the NumPy module
``tracker.geometry.arrays`` (the wire and publish paths) imports without torch.
"""

_TORCH_MODULES = ("tracker.geometry.rotations", "tracker.geometry.transforms")


def __getattr__(name: str):
    import importlib

    for mod in _TORCH_MODULES:
        m = importlib.import_module(mod)
        if name in m.__all__:
            return getattr(m, name)
    raise AttributeError(f"module 'tracker.geometry' has no attribute {name!r}")


def __dir__() -> list[str]:
    import importlib

    return sorted(n for mod in _TORCH_MODULES for n in importlib.import_module(mod).__all__)
