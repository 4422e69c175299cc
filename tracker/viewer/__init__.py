"""The live Open3D viewer (``tracker view``, ``tracker replay --view``).

* :mod:`tracker.viewer.source`: live (SUB to a server) and replay sources, run on a worker
  thread, and the sink that prepares each frame's geometry off the GUI thread;
* :mod:`tracker.viewer.scene`: Open3D geometry builders;
* :mod:`tracker.viewer.app`: the window loop on the main thread (``--screenshot``).
"""
