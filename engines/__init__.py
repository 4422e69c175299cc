"""Engines: the per-frame fit as one call for a batch of sessions (see ``engines.base``)."""

from engines.base import EagerEngine, Engine, EngineError, FitBatch, FitResult, make_engine

__all__ = ["EagerEngine", "Engine", "EngineError", "FitBatch", "FitResult", "make_engine"]
