"""The VMC protocol bridge (``tracker vmc``) and the SMPL+H -> Unity humanoid map.

:mod:`tracker.vmc.mapping` (NumPy): the bone map, frames and thumb correction, shared with the
Unity client (``clients/unity``); :mod:`tracker.vmc.osc`: VMC messages as OSC/UDP datagrams;
:mod:`tracker.vmc.bridge`: ZeroMQ in, OSC out.
"""
