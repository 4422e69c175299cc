"""Headset signals: what the fitter sees, the stage frame, and the device model."""
