"""Training the fitter: windows of K frames with carried state (truncated BPTT).

One optimisation step takes a batch of windows ``(B, K)``; frame 0 of a window starts from
Φ, Φh (reset) and frames 1..K-1 start from the previous frame's Θ and hidden state, with the
gradient flowing through the whole window. With ``burn_in = M`` a window is preceded by M
frames streamed without gradient, so the K trained frames start from a carried state like the
one a live stream is in after a while, not from a fresh reset (truncated BPTT over K frames).
A fraction of batches resets on every frame (the
paper's per-frame mode), so the initialiser Φ stays a good regressor. Losses: Sup. Mat. 6.2
on every iteration's output (``trainer.losses``).

Runs on one CPU/GPU, or several processes through ``torchrun`` (DDP: gloo on CPU, NCCL on
GPU). Checkpoints are atomic; ``resume`` continues from ``RUN/last.pt``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist

from tracker.body.kinematics import load_body_model
from tracker.fitter.canonical import heading_frame
from tracker.fitter.checkpoint import (
    CheckpointError,
    check_body,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from tracker.fitter.fitter import FitterConfig, NeuralFitter, carry_logit
from tracker.fitter.motion import MOTION_STATE_DIM as MOTION_DIM
from tracker.fitter.motion import motion_step
from tracker.fitter.theta import axis_angle_to_theta
from tracker.signals.headset import HeadsetSignals, head_to_hmd
from trainer.losses import LossWeights, MeshSample, fit_losses, foot_losses, velocity_loss

STAGES = ("full", "regressor")


class TrainingError(RuntimeError):
    """A problem with the training inputs (no data, bad checkpoint): shown without traceback."""


@dataclass
class TrainConfig:
    """Settings of ``trainer fit-amass`` (each field is a command-line option)."""

    data: list[str]
    """AMASS-layout folders or files (real AMASS, trainer import-bvh output)."""
    out: str
    """Run folder (checkpoints, TensorBoard logs, data cache)."""
    datasets: list[str] | None = None
    """Only files below folders of these names, e.g. CMU KIT MPI_HDM05 (none: all)."""
    split: str | None = None
    """A split file listing the clips to use."""
    body_model: str | None = None
    """SMPL+H model file or folder (none: the bundled open model)."""
    fitter: FitterConfig = field(default_factory=FitterConfig)
    """Architecture of a new fitter (ignored with --init and --resume)."""
    losses: LossWeights = field(default_factory=LossWeights)
    """Weights of the training losses."""
    stage: Literal["full", "regressor"] = "full"
    """full: the whole fitter; regressor: Φ alone (N = 0, every frame batched: cheap), the
    first stage of the bundled recipe."""
    augment: list[str] = field(default_factory=lambda: ["mirror", "speed", "shape"])
    """Clip augmentations (trainer.augment): mirror, speed (0.8-1.25x), shape; none: off."""
    variants: int = 2
    """Augmented copies of each training clip."""
    hands_lost: float = 0.2
    """Probability that a training window has one hand (or, half as often, both) untracked."""
    window: int = 8
    """Frames per training sequence that get a loss (truncated BPTT)."""
    burn_in: int = 0
    """Frames streamed without gradient before each window (the state a live stream has)."""
    batch: int = 32
    """Sequences per step and process."""
    per_frame_fraction: float = 0.25
    """Fraction of steps whose frames all start from Φ, Φh (the paper's per-frame mode)."""
    epochs: int = 10
    """Passes over the windows (unless --max-steps)."""
    max_steps: int | None = None
    """Stop after this many steps."""
    max_minutes: float | None = None
    """Stop after this long (a checkpoint is written)."""
    lr: float = 1e-3
    """Adam learning rate (warm-up, then cosine decay to 5 %)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    warmup_steps: int = 200
    """Steps of linear learning-rate warm-up."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    mesh_vertices: int | None = 1024
    """Vertices in the mesh losses (0 or none: the whole mesh)."""
    val_fraction: float = 0.1
    """Clips held out for validation (split by take, stable)."""
    fps: float = 60.0
    """Frame rate every motion is resampled to."""
    seed: int = 0
    """Seed of the split, the noise and the augmentations."""
    workers: int = 0
    """Data-loader processes."""
    amp: bool = True
    """bfloat16 autocast on CUDA."""
    resume: bool = False
    """Continue from RUN/last.pt."""
    init: str | None = None
    """Fine-tune: start from this checkpoint's architecture and weights."""
    checkpoint_every: int = 500
    """Steps between checkpoints (RUN/last.pt)."""
    device: str | None = None
    """cpu or cuda (none: cuda when available)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fitter"] = self.fitter.to_dict()
        return d


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> Dist:
    """DDP from torchrun's environment, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(dev)
        return Dist(dist.get_rank(), world, dev)
    return Dist(0, 1, torch.device(device or ("cuda" if cuda else "cpu")))


def batch_signals(batch: dict, k: int, device) -> HeadsetSignals:
    """Frame ``k`` of a collated window batch as fitter inputs with batch ``(B,)``."""
    keys = ("head", "wrists", "tips", "tracked", "tips_valid", "visible")
    return HeadsetSignals(**{key: batch[key][:, k].to(device) for key in keys})


class WindowObjective(torch.nn.Module):
    """Losses averaged over the frames of a window batch: one ``forward`` per step (DDP).

    ``iterations = 0`` trains the regressor Φ alone (every frame from Φ, the motion state
    carried): the cheap first stage of ``trainer fit-amass --stage regressor``.
    """

    def __init__(self, fitter: NeuralFitter, sample: MeshSample,
                 weights: LossWeights | None = None, burn_in: int = 0,
                 iterations: int | None = None):
        super().__init__()
        self.fitter, self.sample, self.weights = fitter, sample, weights or LossWeights()
        self.burn_in, self.iterations = burn_in, iterations

    def forward(self, batch: dict, per_frame: bool) -> dict[str, torch.Tensor]:
        """Mean losses over the last ``K - burn_in`` frames of windows ``(B, K)``.

        Streaming windows carry Θ, the GRU state and the motion state from frame to frame
        (through the burn-in frames without gradient); per-frame windows start every frame
        from Φ, Φh but still carry the motion state (what a stream knows of its past).
        """
        device = self.fitter.theta_rest.device
        M = self.burn_in
        poses, trans = batch["poses"][:, M:].to(device), batch["trans"][:, M:].to(device)
        betas = batch["betas"].to(device)
        fps = batch["fps"].to(device).float()
        dt = 1.0 / fps
        B, K = poses.shape[:2]
        target = axis_angle_to_theta(poses.reshape(B * K, 156), trans.reshape(B * K, 3))
        target = target.reshape(B, K, -1)
        T_hmd = head_to_hmd().to(device)
        stream = not per_frame and self.iterations != 0
        theta = hidden = motion = None

        def flags(v: bool) -> torch.Tensor:
            return torch.full((B,), v, dtype=torch.bool, device=device)

        with torch.no_grad():
            for k in range(M):
                sig = batch_signals(batch, k, device)
                if stream:
                    out = self.fitter(sig, betas, T_hmd, theta, hidden, flags(k == 0),
                                      motion_prev=motion, dt=dt)
                    theta, hidden, motion = out.theta, out.hidden, out.motion
                else:  # only the motion state is carried: no network needed
                    _, motion = motion_step(sig, motion, dt, flags(k == 0),
                                            heading_frame(sig.head))
        sums: dict[str, torch.Tensor] = {}
        joints: list = []
        if self.iterations == 0:  # Φ alone: independent frames, one batched call
            return self._regressor(batch, motion, betas, T_hmd, target, dt, fps)
        for k in range(K):
            sig = batch_signals(batch, M + k, device)
            first = flags(motion is None)
            if stream:
                out = self.fitter(sig, betas, T_hmd, theta, hidden, first | flags(theta is None),
                                  return_iterates=True, motion_prev=motion, dt=dt)
            else:
                out = self.fitter(sig, betas, T_hmd, reset=first, iterations=self.iterations,
                                  return_iterates=True, motion_prev=motion, dt=dt)
            parts = fit_losses(self.fitter.body, out.iterates.float(), target[:, k], betas,
                               self.sample, self.weights, joints_out=joints)
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + v / K
            theta, hidden, motion = out.theta, out.hidden, out.motion
        return self._add_temporal(sums, joints, fps)

    def _add_temporal(self, sums: dict, joints: list, fps: torch.Tensor) -> dict:
        """Add the velocity and foot losses over the window's final-iterate joints."""
        w = self.weights
        if len(joints) > 1:  # the foot terms are logged even when their weights are 0
            extra = {"velocity": velocity_loss(joints), **foot_losses(joints, fps)}
            total = sums["total"] + (w.velocity * extra["velocity"] + w.skating * extra["skating"]
                                     + w.floor * (extra["floor"] + extra["penetration"]))
            sums.update({k: v.detach() for k, v in extra.items()})
            sums["total"] = total
        return sums

    def _regressor(self, batch: dict, motion, betas, T_hmd, target, dt, fps) -> dict:
        """Losses of Φ on every frame of windows ``(B, K)`` after the burn-in, with the motion
        state of each frame, as one batch of ``B·K`` frames."""
        device = betas.device
        M = self.burn_in
        B, K = target.shape[:2]
        befores, first = [], []
        for k in range(K):  # the state each frame starts from (cheap: no network)
            sig = batch_signals(batch, M + k, device)
            befores.append(motion if motion is not None else sig.head.new_zeros(B, MOTION_DIM))
            first.append(torch.full((B,), motion is None, dtype=torch.bool, device=device))
            _, motion = motion_step(sig, motion, dt, first[-1], heading_frame(sig.head))
        keys = ("head", "wrists", "tips", "tracked", "tips_valid", "visible")
        sig = HeadsetSignals(**{k: batch[k][:, M:].transpose(0, 1).reshape(K * B,
                                                                          *batch[k].shape[2:])
                                .to(device) for k in keys})
        out = self.fitter(sig, betas.repeat(K, 1), T_hmd, reset=torch.cat(first), iterations=0,
                          return_iterates=True, motion_prev=torch.cat(befores),
                          dt=dt.repeat(K))
        joints: list = []
        sums = fit_losses(self.fitter.body, out.iterates.float(),
                          target.transpose(0, 1).reshape(K * B, -1), betas.repeat(K, 1),
                          self.sample, self.weights, joints_out=joints)
        pred, gt = joints[0]
        per_frame = list(zip(pred.reshape(K, B, 52, 3), gt.reshape(K, B, 52, 3), strict=True))
        return self._add_temporal(sums, per_frame, fps)


def _init_from(path: str, body, cfg: FitterConfig, log) -> NeuralFitter:
    """The fitter of checkpoint ``path`` (its architecture and weights) to fine-tune.

    A checkpoint from before the carry gate gets the gate at ``cfg.carry`` instead of its
    load-time 1.0. The data-term weights and ``regressor_joints`` are ``cfg``'s (settings of
    the fit, not learned).
    One whose network input D was narrower (from before the motion features, or with fewer of
    them) gets the missing input columns of Φ, Φh and the GRU at zero (D only grows at its
    end), so the fine-tune starts from exactly the checkpoint's fits.
    """
    blob = read_checkpoint(path)
    check_body(blob, body, path, advice="--init needs a checkpoint of this body model")
    old_cfg = FitterConfig.from_dict(blob["config"])
    # the data-term weights and the joints the iterations leave to Φ are settings of the
    # fit, not learned: they come from ``cfg``
    arch = replace(old_cfg, motion=cfg.motion or old_cfg.motion, data_term=cfg.data_term,
                   regressor_joints=cfg.regressor_joints)
    fitter = NeuralFitter(body, arch)
    own = fitter.state_dict()
    weights = dict(blob["weights"])
    grown = []
    for k, w in weights.items():
        if k in own and own[k].shape != w.shape:
            if own[k].dim() != 2 or own[k].shape[0] != w.shape[0] or own[k].shape[1] < w.shape[1]:
                raise CheckpointError(f"{path}: {k} has shape {tuple(w.shape)}, the fitter "
                                      f"needs {tuple(own[k].shape)}")
            padded = torch.zeros_like(own[k])
            padded[:, : w.shape[1]] = w
            weights[k] = padded
            grown.append(k)
    load_weights(fitter, weights, path)
    if grown:
        log(f"widened the network input of {', '.join(grown)} (new columns zero)")
    if "carry_logit" not in blob["weights"]:
        fitter.cfg = replace(fitter.cfg, carry=cfg.carry)
        with torch.no_grad():
            fitter.carry_logit.fill_(carry_logit(cfg.carry))
    log(f"initialised from {path} ({fitter.cfg.layers}x{fitter.cfg.hidden}, "
        f"{fitter.cfg.update_rule}, motion {fitter.cfg.motion})")
    return fitter.train()


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def train(cfg: TrainConfig, log=print) -> Path:
    """Train per ``cfg``; returns the path of the final checkpoint."""
    from tqdm import tqdm

    from trainer.dataset import WindowDataset, load_clips, split_clips

    d = setup_distributed(cfg.device)
    torch.manual_seed(cfg.seed + d.rank)
    out = Path(cfg.out)
    body = load_body_model(cfg.body_model, device=d.device)
    clips, problems = load_clips(cfg.data, fps=cfg.fps, datasets=cfg.datasets,
                                 split_file=cfg.split)
    for p in problems[:20]:
        log(f"skipped: {p}")
    if not clips:
        raise TrainingError(f"no usable motion clips in {cfg.data} ({len(problems)} skipped)")
    train_clips, val_clips = split_clips(clips, cfg.val_fraction, cfg.seed)
    if not train_clips:
        raise TrainingError(f"all {len(clips)} clips went to validation (--val-fraction "
                            f"{cfg.val_fraction:g} splits by take); add clips or use "
                            "--val-fraction 0")
    cache = out / "cache"
    span = cfg.window + cfg.burn_in
    ds = WindowDataset(train_clips, body, window=span, stride=cfg.window, seed=cfg.seed,
                       cache_dir=cache, augment=cfg.augment, variants=cfg.variants,
                       hands_lost=cfg.hands_lost)
    log(f"{len(train_clips)} training clips + {len(ds.clips) - len(train_clips)} augmented "
        f"({'+'.join(cfg.augment) or 'none'}), {len(val_clips)} validation; "
        f"{len(ds)} windows of {span} frames")
    if len(ds) == 0:
        raise TrainingError(f"the training clips are shorter than a window of {span} frames "
                            f"(--window {cfg.window} + --burn-in {cfg.burn_in})")
    sampler = (torch.utils.data.DistributedSampler(ds, d.world, d.rank, seed=cfg.seed)
               if d.world > 1 else None)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler,
        num_workers=cfg.workers, drop_last=len(ds) >= cfg.batch * d.world)
    steps_per_epoch = max(1, len(loader))
    total = cfg.max_steps or cfg.epochs * steps_per_epoch

    fitter = NeuralFitter(body, cfg.fitter).to(d.device)
    if cfg.init and not (cfg.resume and (out / "last.pt").is_file()):
        fitter = _init_from(cfg.init, body, cfg.fitter, log).to(d.device)
    opt = torch.optim.Adam([p for n, p in fitter.named_parameters()], lr=cfg.lr,
                           weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
    step, epoch, resumed_seconds = 0, 0, 0.0
    last = out / "last.pt"
    if cfg.resume and last.is_file():
        blob = read_checkpoint(last)
        check_body(blob, body, last, advice="train into a new --out folder")
        if FitterConfig.from_dict(blob["config"]) != cfg.fitter:
            log("resume: using the architecture stored in the checkpoint")
            fitter = NeuralFitter(body, FitterConfig.from_dict(blob["config"])).to(d.device)
            opt = torch.optim.Adam(fitter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
        load_weights(fitter, blob["weights"], last)
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        step, epoch = blob["meta"]["step"], blob["meta"]["epoch"]
        resumed_seconds = blob["meta"].get("seconds", 0.0)
        log(f"resumed from {last} at step {step}, epoch {epoch}")
    sample = MeshSample.build(body, cfg.mesh_vertices or None, cfg.seed)
    if cfg.stage not in STAGES:
        raise TrainingError(f"unknown stage {cfg.stage!r}; choose from {', '.join(STAGES)}")
    iterations = 0 if cfg.stage == "regressor" else None
    model = WindowObjective(fitter, sample, cfg.losses, burn_in=cfg.burn_in,
                            iterations=iterations)
    if d.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None,
            broadcast_buffers=False, find_unused_parameters=cfg.fitter.update_rule == "lgd")
    amp = cfg.amp and d.device.type == "cuda"
    writer = _tensorboard(out / "tb") if d.main else None
    started = time.monotonic()
    meta = {"config": cfg.to_dict(), "clips_train": len(train_clips), "clips_val": len(val_clips),
            "windows": len(ds), "world_size": d.world, "device": str(d.device),
            "seconds_before": resumed_seconds}

    def save(name: str) -> None:
        if d.main:
            elapsed = time.monotonic() - started + meta.get("seconds_before", 0.0)
            save_checkpoint(out / name, fitter,
                            meta={**meta, "step": step, "epoch": epoch, "seconds": elapsed},
                            extra={"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})

    rng = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank)
    skipped = 0
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not d.main,
               dynamic_ncols=True)
    done = step >= total
    while not done:
        ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        fitter.train()
        for batch in loader:
            per_frame = bool(torch.rand(1, generator=rng) < cfg.per_frame_fraction)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                losses = model(batch, per_frame)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            gnorm = torch.nn.utils.clip_grad_norm_(fitter.parameters(), cfg.grad_clip)
            # A fit that diverges in one window (the fitter falls back to Φ, but 0·NaN is NaN
            # in the backward pass) must not poison the weights: such a step is skipped.
            # Under DDP every rank sees the same reduced norm, so all skip together.
            if torch.isfinite(gnorm):
                opt.step()
            else:
                skipped += 1
                log(f"step {step}: non-finite gradient, skipped ({skipped} so far)")
            sched.step()
            step += 1
            bar.update(1)
            if d.main:
                bar.set_postfix(loss=f"{losses['total'].item():.3f}", epoch=epoch)
                if writer is not None and step % 10 == 0:
                    for k, v in losses.items():
                        writer.add_scalar(f"train/{k}", float(v.detach()), step)
                    writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                    writer.add_scalar("train/grad_norm", float(gnorm), step)
            if step % cfg.checkpoint_every == 0:
                save("last.pt")
            over_time = (cfg.max_minutes is not None
                         and time.monotonic() - started > 60 * cfg.max_minutes)
            if step >= total or over_time:
                done = True
                break
        epoch += 1
        if d.main and val_clips:
            val = validate(fitter, body, val_clips, cfg, d.device, sample)
            log(f"epoch {epoch}: validation " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
            if writer is not None:
                for k, v in val.items():
                    writer.add_scalar(f"val/{k}", v, step)
    bar.close()
    save("last.pt")
    if d.main:
        save("final.pt")
    if writer is not None:
        writer.close()
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out / "final.pt"


@torch.no_grad()
def validate(fitter, body, clips, cfg: TrainConfig, device, sample) -> dict[str, float]:
    """Loss and joint error (mm) of streaming fits on validation windows (clean noise seed)."""
    from trainer.dataset import WindowDataset

    fitter.eval()
    ds = WindowDataset(clips, body, window=cfg.window + cfg.burn_in, stride=cfg.window,
                       seed=cfg.seed + 99991, cache_dir=Path(cfg.out) / "cache")
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch, shuffle=False)
    objective = WindowObjective(fitter, sample, cfg.losses, burn_in=cfg.burn_in,
                                iterations=0 if cfg.stage == "regressor" else None)
    tot, jerr, n = 0.0, 0.0, 0
    for i, batch in enumerate(loader):
        if i >= 20:
            break
        losses = objective(batch, False)
        tot += float(losses["total"])
        jerr += float(losses["transforms"])
        n += 1
    fitter.train()
    return {"loss": tot / max(n, 1), "transforms_l1": jerr / max(n, 1)}


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(str(path))
