"""The live Open3D viewer (``tracker view``, ``tracker replay --view``).

* :mod:`tracker.viewer.source`: live (SUB to a server) and replay sources, run on a worker
  thread, and the sink that counts the poses and keeps the newest for the window;
* :mod:`tracker.viewer.scene`: Open3D geometry builders and the legend;
* :mod:`tracker.viewer.app`: the window loop on the main thread (``--screenshot``).

:func:`display_problem` (no Open3D import) lets the commands refuse at once without a display.
"""

from __future__ import annotations

import os
import sys


def display_problem(screenshot: bool = False) -> str | None:
    """Why no window can open here (Linux without a usable X or Wayland display), or ``None``.

    Without a display Open3D falls back to rendering off-screen, which suits ``--screenshot``
    (no window needed) but would leave an interactive viewer running unseen until killed.
    """
    if screenshot or not sys.platform.startswith("linux"):
        return None
    hint = ("the viewer needs a desktop session; headless, use xvfb-run -a, or --screenshot "
            "FILE to save one frame rendered off-screen")
    x11, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if not x11 and not wayland:
        return f"no display (DISPLAY and WAYLAND_DISPLAY are not set): {hint}"
    if x11 and not _x11_opens(x11):
        return f"cannot open the X display {x11!r} (DISPLAY): {hint}"
    return None


def _x11_opens(name: str) -> bool:
    """Whether X display ``name`` accepts a connection (``True`` when libX11 is not found:
    let the window try)."""
    import ctypes
    import ctypes.util

    lib = ctypes.util.find_library("X11")
    if lib is None:
        return True
    try:
        x11 = ctypes.CDLL(lib)
    except OSError:
        return True
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    d = x11.XOpenDisplay(name.encode())
    if not d:
        return False
    x11.XCloseDisplay(d)
    return True
