"""Offline evaluation of the fitter and its baselines on AMASS-layout motions (``trainer eval``).

For every sequence and visibility setting the ground-truth motion is posed on the stage with
the clip's own β, its headset signals are derived with the one signal path
(``tracker.signals.motion.motion_signals``) and passed through the device noise model
(``DeviceModel``, seeded per clip), and each method fits them:

* ``fitter``: streaming, the live server's call: ``make_engine("eager", fitter).fit`` once per
  frame, Θ (through the carry gate, ``tracker.fitter.fitter``) and the GRU state carried
  over, reset on the first frame (and on the frame after a
  fit that diverged, as the server does); sequences are batched (B = sequences, loop over time);
* ``fitter-per-frame``: the paper's setting, every frame from Φ, Φh (Alg. 1), N iterations;
* ``regressor``: Φ alone (N = 0);
* ``lgd``: a fitter trained with ``update_rule="lgd"`` (λ = 1, γ = 0; Song et al. 2020), streamed
  like ``fitter``;
* ``lbfgs``: the classic baseline (``trainer.baselines.lbfgs``), every ``lbfgs_stride``-th frame.

Metrics (``trainer.metrics``) are averaged over all frames of all sequences. ``lbfgs`` with a
stride > 1 is scored on its own frames, its velocity / jitter at the subsampled rate
``fps / stride``. ``visibility``: ``full`` is the paper's full visibility = our signals mode
``"device"`` (a hand enters the fit whenever the device tracks it); ``half-space`` adds the
paper's field-of-view test (``hand_visibility``).
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engines.base import Engine
from engines.registry import make_engine
from tracker.body.skinning import MeshPoser
from tracker.fitter.fitter import NeuralFitter
from tracker.fitter.motion import motion_states
from tracker.fitter.theta import split_theta
from tracker.geometry.rotations import axis_angle_to_matrix, rotation_6d_to_matrix
from tracker.signals.device import DeviceModel
from tracker.signals.headset import HeadsetSignals, head_to_hmd
from tracker.signals.motion import motion_signals, stage_params
from tracker.stream import NS_PER_S, StreamState, fit_tick
from trainer.baselines.gmm import MaxMixturePrior
from trainer.baselines.lbfgs import LBFGSConfig, fit_lbfgs
from trainer.metrics import (
    METRIC_UNITS,
    MetricSums,
    frame_metrics,
    part_vertex_ids,
    temporal_metrics,
)

METHODS = ("fitter", "fitter-per-frame", "regressor", "lgd", "lbfgs")
VISIBILITY = {"full": "device", "half-space": "half-space"}  # eval name -> signals mode
ITERATION_METRICS = ("v2v_fb_mm", "jnt_err_mm", "v2v_head_mm", "v2v_lhand_mm", "v2v_rhand_mm",
                     "grpe_mm", "grpe_joints_mm")


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how."""

    methods: tuple[str, ...] = METHODS
    """Methods to run (see the module docstring)."""
    visibility: tuple[str, ...] = ("full", "half-space")
    """Visibility settings: ``full`` (signals mode ``device``) and/or ``half-space``."""
    noise: str = "consumer"
    """``DeviceModel`` preset for the observed signals (``clean``, ``consumer``, ``degraded``)."""
    seed: int = 0
    """Base seed of the device noise (each clip is seeded by its content digest and this)."""
    batch: int = 16
    """Sequences streamed together."""
    chunk: int = 256
    """Frames per batched per-frame fit and per metric evaluation."""
    max_frames: int | None = None
    """Cut every sequence to at most this many frames (quick runs)."""
    lbfgs: LBFGSConfig = field(default_factory=LBFGSConfig)
    """Settings of the L-BFGS baseline."""
    lbfgs_stride: int = 1
    """Fit every S-th frame with L-BFGS (velocity and jitter then at ``fps / S``)."""
    iterates: bool = False
    """Also collect the per-iteration errors of the per-frame fitter (the paper's Fig. 4)."""


@dataclass
class EvalReport:
    """Results of :func:`evaluate`.

    Attributes:
        methods: ``{method: {visibility: {metric: value}}}`` in reported units (``None`` when a
            metric has no sample, e.g. jitter on sequences shorter than 4 frames).
        frames, sequences: ground-truth frames and sequences evaluated.
        iterations: ``{visibility: [{metric: value} for n in 0..N]}`` (per-frame fitter).
        seconds: wall-clock fitting time per method (all visibilities), metrics excluded.
        fitted: frames fitted per method (all visibilities; ``lbfgs`` counts its stride).
    """

    methods: dict[str, dict[str, dict[str, float | None]]]
    frames: int
    sequences: int
    iterations: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    fitted: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        """``{"methods": ..., "frames": n, "sequences": n}``, the ``trainer eval --json`` file."""
        return {"methods": self.methods, "frames": self.frames, "sequences": self.sequences}


@dataclass
class _Sequence:
    name: str
    fps: float
    betas: Tensor  # (K,)
    gt_rot: Tensor  # (T, 52, 3, 3) stage, parent-relative
    gt_transl: Tensor  # (T, 3)
    signals: dict[str, HeadsetSignals]  # visibility -> (T,) noisy observations

    @property
    def frames(self) -> int:
        return self.gt_transl.shape[0]


# ----------------------------------------------------------------------------- preparation
def clip_seed(clip, seed: int) -> int:
    """The device-noise seed of a clip, from its content digest (its name if it has none): the
    same whichever other clips are evaluated and however the file is addressed."""
    key = getattr(clip, "digest", "") or clip.name
    return (zlib.crc32(key.encode()) ^ (seed * 0x9E3779B1)) & 0x7FFFFFFF


def prepare_sequence(fitter: NeuralFitter, clip, cfg: EvalConfig, T_hmd: Tensor) -> _Sequence:
    """Ground truth on the stage and noisy signals per visibility for one ``MotionClip``."""
    body = fitter.body
    n = len(clip.poses) if cfg.max_frames is None else min(len(clip.poses), cfg.max_frames)
    poses, trans, betas = clip.poses[:n], clip.trans[:n], np.asarray(clip.betas)
    clean, _, _ = motion_signals(body, poses, trans, betas, T_hmd, mode="device")
    st_poses, st_trans, st_betas = stage_params(body, poses, trans, betas)
    device = DeviceModel.presets()[cfg.noise]
    seed = clip_seed(clip, cfg.seed)
    signals = {v: device.apply(clean, seed, VISIBILITY[v]) for v in cfg.visibility}
    return _Sequence(clip.name, float(clip.fps), st_betas[0],
                     axis_angle_to_matrix(st_poses.reshape(n, 52, 3)), st_trans, signals)


# ----------------------------------------------------------------------------- methods
def stream(engine: Engine, seqs: list[_Sequence], vis: str, T_hmd: Tensor) -> list[Tensor]:
    """Streaming fits through ``engine``, ``B = len(seqs)`` sessions; ``[(T_i, 315)]``.

    ``seqs`` must be sorted by decreasing length: the sessions still running at frame ``t`` are
    then a prefix of the batch.
    """
    lengths = [s.frames for s in seqs]
    assert lengths == sorted(lengths, reverse=True)
    B, T = len(seqs), lengths[0]

    def pad(x: Tensor) -> Tensor:  # (T_i, ...) -> (T, ...) repeating the last frame
        return torch.cat([x, x[-1:].expand(T - len(x), *x.shape[1:])]) if len(x) < T else x

    sig = HeadsetSignals(**{k: torch.stack([pad(getattr(s.signals[vis], k)) for s in seqs])
                            for k in ("head", "wrists", "tips", "tracked", "tips_valid",
                                      "visible")})
    betas = torch.stack([s.betas for s in seqs])
    T_b = T_hmd.expand(B, 4, 4)
    streams = [StreamState() for _ in seqs]
    out = torch.zeros(B, T, 315)
    for t in range(T):
        n = sum(L > t for L in lengths)
        t_ns = [round(t * NS_PER_S / s.fps) for s in seqs[:n]]
        res, _, _ = fit_tick(engine, streams[:n], sig.map(lambda x, n=n, t=t: x[:n, t]),
                             betas[:n], T_b[:n], t_ns)
        out[:n, t] = res.theta.cpu()
    return [out[i, :L] for i, L in enumerate(lengths)]


@torch.no_grad()
def per_frame(fitter: NeuralFitter, sig: HeadsetSignals, betas: Tensor, T_hmd: Tensor,
              chunk: int, iterations: int | None = None, iterates: bool = False,
              fps: float = 60.0):
    """Independent per-frame fits of ``sig (T,)``: Θ ``(T, 315)`` and, if asked, the iterates
    ``(N+1, T, 315)``. Each frame starts from Φ, Φh; the motion state (what a stream knows of
    its past signals, ``tracker.fitter.motion``) is the one the stream would have."""
    thetas, its = [], []
    motion, _ = motion_states(sig, 1.0 / fps)
    first = torch.arange(sig.head.shape[0]) == 0
    for s in range(0, sig.head.shape[0], chunk):
        sg = sig.map(lambda x, s=s: x[s : s + chunk])
        n = sg.head.shape[0]
        out = fitter(sg, betas.expand(n, -1), T_hmd, reset=first[s:s + chunk],
                     iterations=iterations, return_iterates=iterates,
                     motion_prev=motion[s:s + chunk],
                     dt=torch.full((n,), 1.0 / fps, dtype=sg.head.dtype))
        thetas.append(out.theta)
        if iterates:
            its.append(out.iterates)
    return torch.cat(thetas), (torch.cat(its, 1) if iterates else None)


def theta_to_pose(theta: Tensor) -> tuple[Tensor, Tensor]:
    """Θ ``(T, 315)`` -> parent-relative rotations ``(T, 52, 3, 3)`` and translation ``(T, 3)``."""
    d6, transl = split_theta(theta)
    return rotation_6d_to_matrix(d6), transl


# ----------------------------------------------------------------------------- scoring
def score(poser: MeshPoser, parts, seq: _Sequence, preds: dict[str, Tensor], stride: int,
          chunk: int, sums: dict[str, MetricSums], temporal: set[str]) -> None:
    """Add the metrics of predictions ``{key: Θ (T_s, 315)}`` fitted on frames ``::stride``."""
    idx = torch.arange(0, seq.frames, stride)
    joints: dict[str, list[Tensor]] = {k: [] for k in preds}
    gt_joints = []
    for s in range(0, len(idx), chunk):
        sel = idx[s : s + chunk]
        gt = poser(seq.gt_rot[sel], seq.gt_transl[sel])
        gt_joints.append(gt.joints)
        for key, theta in preds.items():
            pred = poser(*theta_to_pose(theta[s : s + chunk]))
            frame_metrics(pred, gt, parts, sums.setdefault(key, MetricSums()))
            joints[key].append(pred.joints)
    g = torch.cat(gt_joints)
    for key in preds:
        if key in temporal:
            temporal_metrics(torch.cat(joints[key]), g, seq.fps / stride, sums[key])


def evaluate(clips, fitter: NeuralFitter, cfg: EvalConfig = EvalConfig(),
             lgd_fitter: NeuralFitter | None = None, prior: MaxMixturePrior | None = None,
             T_hmd: Tensor | None = None, progress: bool = True) -> EvalReport:
    """Run every method of ``cfg`` on ``clips`` (``MotionClip``-like: ``name, poses (N, 156)``
    AMASS Z-up, ``trans (N, 3)``, ``betas``, ``fps``) and score them.

    Args:
        fitter: the fitter under test (eval mode). lgd_fitter: needed for ``lgd``.
        prior: the GMM pose prior, needed for ``lbfgs``.
        T_hmd: ``(4, 4)`` headset in the head-joint frame (default ``head_to_hmd()``).
    """
    from tqdm import tqdm

    if "lgd" in cfg.methods and lgd_fitter is None:
        raise ValueError("method 'lgd' needs lgd_fitter")
    if "lbfgs" in cfg.methods and prior is None:
        raise ValueError("method 'lbfgs' needs a GMM prior")
    unknown = set(cfg.methods) - set(METHODS) | set(cfg.visibility) - set(VISIBILITY)
    if unknown:
        raise ValueError(f"unknown methods / visibility settings: {sorted(unknown)}")
    if not clips:
        raise ValueError("no motion clips to evaluate")
    fitter.eval()
    body = fitter.body
    T_hmd = head_to_hmd(dtype=body.dtype) if T_hmd is None else T_hmd.to(body.dtype)
    parts = part_vertex_ids(body.weights)
    methods = [m for m in METHODS if m in cfg.methods]
    engines = {m: make_engine("eager", f) for m, f in (("fitter", fitter), ("lgd", lgd_fitter))
               if m in methods}  # the live server's per-frame call
    sums = {v: {} for v in cfg.visibility}  # vis -> key -> MetricSums
    seconds = dict.fromkeys(methods, 0.0)
    fitted = dict.fromkeys(methods, 0)
    order = sorted(range(len(clips)), key=lambda i: -len(clips[i].poses))
    frames = 0
    bar = tqdm(total=len(clips), desc="eval", unit="seq", disable=not progress)
    for b0 in range(0, len(order), cfg.batch):
        with torch.no_grad():
            seqs = [prepare_sequence(fitter, clips[i], cfg, T_hmd)
                    for i in order[b0 : b0 + cfg.batch]]
        seqs.sort(key=lambda s: -s.frames)
        frames += sum(s.frames for s in seqs)
        for vis in cfg.visibility:
            streamed = {}
            for m, engine in engines.items():
                bar.set_postfix_str(f"{vis} {m}")
                t0 = time.perf_counter()
                streamed[m] = stream(engine, seqs, vis, T_hmd)
                seconds[m] += time.perf_counter() - t0
                fitted[m] += sum(s.frames for s in seqs)
            for i, seq in enumerate(seqs):
                poser = MeshPoser(body, seq.betas)
                preds = {m: streamed[m][i] for m in streamed}
                sig = seq.signals[vis]
                runs = [("regressor", 0, False)] if "regressor" in methods else []
                if "fitter-per-frame" in methods or cfg.iterates:
                    runs.append(("fitter-per-frame", None, cfg.iterates))
                for m, its, want in runs:
                    bar.set_postfix_str(f"{vis} {m}")
                    t0 = time.perf_counter()
                    theta, iterates = per_frame(fitter, sig, seq.betas, T_hmd, cfg.chunk, its,
                                                want, seq.fps)
                    if m in methods:
                        seconds[m] += time.perf_counter() - t0
                        fitted[m] += seq.frames
                        preds[m] = theta
                    if iterates is not None:
                        preds.update({f"iter{n}": it for n, it in enumerate(iterates)})
                with torch.no_grad():
                    score(poser, parts, seq, preds, 1, cfg.chunk, sums[vis], set(methods))
                if "lbfgs" in methods:
                    bar.set_postfix_str(f"{vis} lbfgs")
                    sel = torch.arange(0, seq.frames, cfg.lbfgs_stride)
                    t0 = time.perf_counter()
                    theta = fit_lbfgs(body, sig.map(lambda x, sel=sel: x[sel]),
                                      seq.betas.expand(len(sel), -1), T_hmd, prior, cfg.lbfgs,
                                      fitter.cfg.data_term)
                    seconds["lbfgs"] += time.perf_counter() - t0
                    fitted["lbfgs"] += len(sel)
                    with torch.no_grad():
                        score(poser, parts, seq, {"lbfgs": theta}, cfg.lbfgs_stride, cfg.chunk,
                              sums[vis], {"lbfgs"})
        bar.update(len(seqs))
    bar.close()

    keys = list(METRIC_UNITS)
    results = {m: {v: {k: sums[v][m].result().get(k) for k in keys} for v in cfg.visibility}
               for m in methods}
    iterations = {}
    if cfg.iterates:
        n_its = sum(k.startswith("iter") for k in next(iter(sums.values())))
        iterations = {v: [{k: sums[v][f"iter{n}"].result().get(k) for k in ITERATION_METRICS}
                          for n in range(n_its)] for v in cfg.visibility}
    return EvalReport(results, frames, len(clips), iterations, seconds, fitted)


# ----------------------------------------------------------------------------- data
def load_motions(paths, fps: float = 60.0, split_file=None, datasets=None,
                 progress: bool = False) -> tuple[list, list[str]]:
    """AMASS-layout clips (``MotionClip``) from files or folders, resampled to ``fps``: the
    training data reader (``trainer.dataset.load_clips``) when present, else
    ``tracker.motion.amass.load_amass`` (SMPL+H and SMPL-X releases, bad files skipped).

    Returns:
        ``(clips, problems)``: one message per skipped file or selection issue.
    """
    try:
        from trainer.dataset import load_clips
    except ImportError:
        from tracker.motion.amass import load_amass

        return load_amass([str(p) for p in paths], fps=fps, datasets=datasets,
                          split_file=split_file, progress=progress)
    return load_clips([str(p) for p in paths], fps=fps, datasets=datasets, split_file=split_file)


def seconds_per_1000_frames(report: EvalReport) -> dict[str, float]:
    """Fitting time per method, seconds per 1000 fitted frames."""
    return {m: (1000.0 * s / report.fitted[m] if report.fitted.get(m) else math.nan)
            for m, s in report.seconds.items()}


def prior_from_data(paths, components: int = 8, fps: float = 60.0, max_samples: int = 20_000,
                    seed: int = 0, cache_dir: str | Path | None = None):
    """The GMM pose prior fitted on the motions under ``paths``, cached by content.

    The cache key covers every file's path, size and modification time and the fit settings;
    the cache lives in ``$XDG_CACHE_HOME/fitstream/gmm`` (default ``~/.cache``).

    Returns:
        ``(GaussianMixture, path of the cached file, whether it came from the cache)``.
    """
    import hashlib
    import json
    import os

    from trainer.baselines.gmm import GMM_FIT_VERSION, GaussianMixture, fit_gmm, pose_samples

    files = []
    for p in map(lambda x: Path(x).expanduser().resolve(), paths):
        for f in sorted(p.rglob("*.npz")) if p.is_dir() else [p]:
            st = f.stat()
            files.append([str(f), st.st_size, st.st_mtime_ns])
    settings = [components, fps, max_samples, seed, GMM_FIT_VERSION]
    key = hashlib.sha1(json.dumps([files, settings]).encode())
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        cache_dir = Path(base) / "fitstream" / "gmm"
    path = Path(cache_dir) / f"gmm-{key.hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            return GaussianMixture.load(path), path, True
        except ValueError:
            pass  # a broken cache entry: fit again
    clips, _ = load_motions(paths, fps)
    if not clips:
        raise ValueError(f"no usable motion clips in {' '.join(map(str, paths))}")
    gmm = fit_gmm(pose_samples([c.poses for c in clips], max_samples, seed), components,
                  seed=seed)
    try:
        gmm.save(path)
    except OSError:
        pass  # read-only home: no cache
    return gmm, path, False
