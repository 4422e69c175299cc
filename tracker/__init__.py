"""Real-time SMPL+H body tracking from headset signals (Choutas et al., ECCV 2022, streamed)."""

__version__ = "0.1.0"
