"""Engines: the per-frame fit as one call for a batch of sessions (see ``engines.base``)."""

from engines.base import (
    EagerEngine,
    Engine,
    EngineError,
    FitBatch,
    FitResult,
    FitState,
)
from engines.buckets import BUCKETS, bucket_for
from engines.cache import EngineCache
from engines.registry import available_engines, make_engine, resolve_engine_name

__all__ = ["BUCKETS", "EagerEngine", "Engine", "EngineCache", "EngineError", "FitBatch",
           "FitResult", "FitState", "available_engines", "bucket_for", "make_engine",
           "resolve_engine_name"]
