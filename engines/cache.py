"""The on-disk cache of built engines (ONNX graphs, compiled libraries, TensorRT plans).

An engine is built once and found again by its **key**, a dict of everything its bytes
depend on:

* ``backend`` and ``format`` (bumped when an engine module changes what it writes);
* ``checkpoint``: a hash of the fitter's config, weights and body-model fingerprint
  (:func:`fitter_fingerprint`) — a retrained or other checkpoint is another engine;
* ``source``: a hash of the code (the AST: comments and docstrings do not count) of the traced
  fit (fitter, data term, kinematics, geometry, ``engines/flat.py``, the backend's module) —
  an edited fit is another engine;
* ``precision`` (``fp32`` / ``fp16``), ``bucket`` (batch size, or the range a dynamic-shape
  engine covers), ``device`` (CPU ISA, or GPU name + compute capability);
* ``versions`` of Python, torch and the backend's libraries.

Entries live in ``<root>/<backend>/<precision>-b<bucket>-<digest>/`` with ``meta.json``
(the full key and the artifact's SHA-256) beside the artifact. Lookups compare the *whole*
key and re-hash the artifact, so a stale or half-written entry is rebuilt, never used. When an
entry is built, older entries for the same checkpoint, backend, precision, bucket and device
(other library versions or sources) are deleted. Builds are atomic (temporary directory, then
rename) and serialised per key with a file lock.

The root is ``$FITSTREAM_CACHE`` if set, else ``~/.cache/fitstream/engines``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from tracker.fitter.fitter import NeuralFitter

T = TypeVar("T")
ENV_VAR = "FITSTREAM_CACHE"
_REPO = Path(__file__).resolve().parent.parent
# The Python files whose code ends up inside a traced fit.
SOURCE_FILES = (
    "tracker/fitter/fitter.py", "tracker/fitter/data_term.py", "tracker/fitter/canonical.py",
    "tracker/fitter/network.py", "tracker/fitter/theta.py", "tracker/body/kinematics.py",
    "tracker/body/kinematics_vjp.py", "tracker/body/joints.py", "tracker/geometry/rotations.py",
    "tracker/geometry/transforms.py", "tracker/signals/headset.py", "engines/flat.py",
    "tracker/fitter/motion.py", "tracker/fitter/outputs.py",
)


def default_root() -> Path:
    """``$FITSTREAM_CACHE`` or ``~/.cache/fitstream/engines``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fitstream" / "engines"


def fitter_fingerprint(fitter: NeuralFitter) -> str:
    """SHA-256 (hex, 24 chars) of the fitter's config, weights and body-model fingerprint."""
    h = hashlib.sha256()
    h.update(json.dumps(fitter.cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update(fitter.body.fingerprint.encode())
    for name, t in sorted(fitter.state_dict().items()):
        if name.startswith("body."):
            continue
        h.update(name.encode())
        t = t.detach().to("cpu").contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def _code_only(src: bytes) -> bytes:
    """The code of a Python source without comments, docstrings or formatting (its AST)."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def source_fingerprint(extra: tuple[str, ...] = ()) -> str:
    """SHA-256 (hex, 16 chars) of the code of the traced fit's source files (and ``extra``
    repo paths). Comments, docstrings and formatting do not count: only code changes
    invalidate built engines."""
    h = hashlib.sha256()
    for rel in SOURCE_FILES + tuple(extra):
        p = _REPO / rel
        h.update(rel.encode())
        h.update(_code_only(p.read_bytes()) if p.is_file() else b"<missing>")
    return h.hexdigest()[:16]


def device_tag(device: torch.device | str) -> str:
    """What a compiled artifact is specific to: CPU vector ISA, or GPU model and capability."""
    device = torch.device(device)
    if device.type == "cuda":
        i = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(i)
        return f"cuda:{torch.cuda.get_device_name(i)}:sm{major}{minor}"
    return f"cpu:{platform.machine()}:{torch.backends.cpu.get_cpu_capability()}"


def library_versions(*modules: str) -> dict[str, str]:
    """``{"python": ..., "torch": ..., <module>: version}`` (``"missing"`` if not importable)."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in modules:
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", "unknown"))
        except Exception:
            out[name] = "missing"
    return out


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent builders race, the rename keeps it consistent
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class EngineCache:
    """Built engines on disk (see the module docstring)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    @staticmethod
    def digest(key: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]

    def path_for(self, key: dict[str, Any]) -> Path:
        """Directory of the entry for ``key``."""
        name = f"{key.get('precision', 'na')}-b{key.get('bucket', 'na')}-{self.digest(key)}"
        return self.root / str(key["backend"]) / name

    def lookup(self, key: dict[str, Any], artifact: str) -> Path | None:
        """The artifact's path if a *valid* entry for exactly ``key`` exists, else ``None``."""
        d = self.path_for(key)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        path = d / artifact
        if meta.get("key") != key or not path.is_file():
            return None
        if meta.get("sha256") != sha256_file(path):
            return None
        return path

    def get_or_build(
        self,
        key: dict[str, Any],
        artifact: str,
        build: Callable[[Path], None],
        load: Callable[[Path], T],
    ) -> tuple[T, bool]:
        """Load the cached artifact for ``key``, or build it with ``build(path)`` first.

        Returns ``(loaded, built)``. An entry that is stale, corrupt or fails to load is
        deleted and rebuilt.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        d = self.path_for(key)
        d.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(d.parent / f".{d.name}.lock"):
            path = self.lookup(key, artifact)
            if path is not None:
                try:
                    return load(path), False
                except Exception as exc:  # e.g. a library upgrade the key did not capture
                    warnings.warn(f"engine cache entry {d} does not load ({exc}); rebuilding",
                                  stacklevel=2)
            shutil.rmtree(d, ignore_errors=True)
            for stale in d.parent.glob(f".{d.name}.*"):  # builds killed before cleaning up
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))
            try:
                t0 = time.perf_counter()
                build(tmp / artifact)
                meta = {"key": key, "artifact": artifact, "sha256": sha256_file(tmp / artifact),
                        "built_s": round(time.perf_counter() - t0, 2),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
                os.replace(tmp, d)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self._prune_siblings(key)
            return load(d / artifact), True

    def _prune_siblings(self, key: dict[str, Any]) -> None:
        """Delete entries for the same slot (checkpoint, backend, precision, bucket, device)
        built with other library versions or sources: they can never be used again."""
        slot = ("checkpoint", "backend", "precision", "bucket", "device", "options")
        keep = self.path_for(key)
        for meta_path in keep.parent.glob("*/meta.json"):
            if meta_path.parent == keep:
                continue
            try:
                other = json.loads(meta_path.read_text())["key"]
            except (OSError, ValueError, KeyError):
                continue
            if all(other.get(s) == key.get(s) for s in slot):
                shutil.rmtree(meta_path.parent, ignore_errors=True)

    def entries(self) -> list[dict[str, Any]]:
        """The metadata of every entry (for ``tracker bench --cache`` style listings)."""
        out = []
        for meta_path in sorted(self.root.glob("*/*/meta.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append({"path": str(meta_path.parent), **json.loads(meta_path.read_text())})
        return out

    def clear(self) -> None:
        """Delete every cached engine."""
        shutil.rmtree(self.root, ignore_errors=True)
