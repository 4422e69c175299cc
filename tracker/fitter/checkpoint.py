"""Fitter checkpoints: weights, architecture, and the body model they were trained with.

A checkpoint is a ``torch.save`` dict::

    {"format": 1, "config": FitterConfig.to_dict(), "weights": state_dict (no body buffers),
     "body_fingerprint": str, "body_name": str, "meta": {...training info...}}

It is written atomically (temporary file + rename), so a crash never leaves a half file. It
is read with ``torch.load(weights_only=True)``: a file that would need to build other
Python objects (and so could run code) is refused.
Loading with another body model is an error: the fitter learned that model's kinematics.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from tracker.body.kinematics import BodyModel, load_body_model
from tracker.fitter.fitter import FitterConfig, NeuralFitter

FORMAT = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "models" / "default.pt"
# Used only while no bundled checkpoint exists (development): small, untrained.
FALLBACK_CONFIG = FitterConfig(hidden=256, layers=2)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or made for another body model."""


def save_checkpoint(path: str | Path, fitter: NeuralFitter, meta: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``fitter`` atomically to ``path``; ``extra`` holds e.g. optimiser state."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v for k, v in fitter.state_dict().items() if not k.startswith("body.")}
    blob = {
        "format": FORMAT,
        "config": fitter.cfg.to_dict(),
        "weights": weights,
        "body_fingerprint": fitter.body.fingerprint,
        "body_name": fitter.body.data.name,
        "meta": meta or {},
        **(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is for everyone to read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:  # tensors, numbers, strings and containers only: a checkpoint never runs code
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from tracker.errors import describe_file

        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = describe_file(path)
        if kind not in ("a PyTorch file", "a Python pickle"):  # not what torch.save writes
            reason = f"{kind}; expected a .pt file written by trainer fit-amass"
        elif "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds Python objects other than tensors and plain data, refused"
        raise CheckpointError(f"{path}: cannot read checkpoint ({reason})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fitter checkpoint (format {FORMAT})")
    return blob


def check_body(blob: dict, body: BodyModel, path: str | Path,
               advice: str = "use --body-model with the model it was trained for, or train a "
                             "fitter for this model") -> None:
    """Raise :class:`CheckpointError` unless checkpoint ``blob`` (:func:`read_checkpoint`, from
    ``path``) was trained for ``body``; ``advice`` ends the message (what the user can do)."""
    if blob["body_fingerprint"] != body.fingerprint:
        raise CheckpointError(
            f"{path}: trained for body model {blob['body_name']} "
            f"(fingerprint {blob['body_fingerprint']}), not {body.data.name} "
            f"(fingerprint {body.fingerprint}); {advice}"
        )


def load_weights(fitter: NeuralFitter, weights: dict, path: str | Path) -> None:
    """Load a checkpoint's ``weights`` (from ``path``) into ``fitter``; raise
    :class:`CheckpointError` when they do not match its config. The body buffers are the body
    model's, and ``carry_logit`` may be absent (checkpoints from before the carry gate keep
    ``config.carry``)."""
    missing, unexpected = fitter.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("body.") and k != "carry_logit"]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the config ({missing or unexpected})")


def load_fitter(
    checkpoint: str | Path | None = None,
    body: BodyModel | None = None,
    device: str | torch.device = "cpu",
) -> NeuralFitter:
    """The fitter from ``checkpoint`` (default: the bundled one) in eval mode, float32.

    Raises :class:`CheckpointError` when the checkpoint was trained for another body model.
    """
    body = body if body is not None else load_body_model(device=device)
    if checkpoint is None and not DEFAULT_CHECKPOINT.is_file():
        warnings.warn("no bundled fitter checkpoint: using UNTRAINED weights", stacklevel=2)
        torch.manual_seed(0)
        return NeuralFitter(body, FALLBACK_CONFIG).to(device).eval()
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    blob = read_checkpoint(path)
    check_body(blob, body, path)
    fitter = NeuralFitter(body, FitterConfig.from_dict(blob["config"]))
    load_weights(fitter, blob["weights"], path)
    return fitter.to(device).eval()
