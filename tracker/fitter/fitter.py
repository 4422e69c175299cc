"""The neural fitter: Φ, Φh initialisers, a layer-normalised GRU, and the update rule.

Choutas et al. 2022, Alg. 1 and Eq. 1-2, per frame::

    Θ0 = Φ(D), h0 = Φh(D)                        (per frame, or the first frame of a stream)
    Θ0 = Φ(D) + a ⊙ (Θ(t-1) - Φ(D)), h0 = h(t-1)  (streaming: the carry gate a, see below)
    for n = 1..N:
        ΔΘn, hn = f([g(n-1), Θ(n-1)], D, h(n-1))
        λ, γ    = f_λγ(R(Θ(n-1)), R(Θ(n-1) + ΔΘn))
        Θn      = Θ(n-1) + λ ΔΘn - γ g(n-1)

Θ ``(B, 315)`` = 52 joint rotations in 6D + root translation, β given. The fit runs in the
canonical heading frame (``tracker.fitter.canonical``); inputs and outputs are stage-frame.

Streaming warm start (our extension). Starting a frame exactly from the previous result lets
errors in what the headset does not observe (legs, pelvis height) persist and accumulate: with
the session-1 model, joint error grew from 101 mm in the first 40 frames to 300 mm after 200
frames, while fits restarted from Φ stayed flat. Each stream step therefore starts from the
previous Θ pulled towards this frame's regressor guess by a learned per-parameter gate
``a = sigmoid(carry_logit)`` in (0, 1): an error decays by ``a`` per frame instead of
persisting, and a well-observed parameter keeps its smooth history. The GRU state is carried
unchanged.

Motion in the observations (our extension). A frame's snapshot of head and hands says little
about the legs; how they have been moving says much more (gait shows in the head's speed,
bob and sway). With ``motion=True`` each session also carries a small motion state
(``tracker.fitter.motion``): velocities and multi-timescale moving averages of the head and
wrist motion, read as features in the canonical frame and appended to D, so Φ, Φh and the GRU
all see the recent past. The state is an explicit input and output of every fit.

Joints the regressor owns (our extension). The data term sees the head, wrists, fingertips
and (through the floor term) the feet, but nothing of the leg rotations: its gradient there
is zero or weak, and what the GRU writes into them is a guess no better informed than Φ's.
Measured on the session-3 model (held-out clips, clean, streaming), the iterations moved the
legs from Φ's 11.9 cm lower-body error to 14.0 cm. ``regressor_joints`` names joints whose
rotations the iterations leave as Φ (and, streaming, the carry gate) set them; by default the
root orientation and the leg chain (:data:`REGRESSOR_JOINT_NAMES`). Translation and every
other joint are still refined. The root orientation joined in session 9: with the GRU of
session 3 and Φ of session 8 (first 600 frames of 21 training clips, clean, streaming), the
iterations turned the root away from Φ's better guess, head V2V 17.5 → 13.7 mm and lower
body 13.21 → 13.04 cm when they leave it alone (``tools/fit_settings.py``; the model
card has the table).

There is no Python branching on tensor values inside a fit and no autograd: a fit traces to
one graph (``engines/``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn

from tracker.body.joints import JOINT_NAMES, LEG_JOINT_NAMES
from tracker.body.kinematics import BodyModel
from tracker.fitter.canonical import heading_frame, signals_to_frame, theta_to_frame
from tracker.fitter.data_term import RESIDUAL_DIM, THETA_DIM, DataTermConfig, data_term
from tracker.fitter.motion import MOTION_FEATURE_DIM, MOTION_STATE_DIM, motion_step
from tracker.fitter.network import GRUStack, mlp, small_init_
from tracker.geometry.rotations import matrix_to_rotation_6d
from tracker.signals.headset import HeadsetSignals

DIVERGED_RESIDUAL_M = 0.5  # a fit whose RMS residual exceeds this is treated as diverged
REGRESSOR_JOINT_NAMES = ("pelvis", *LEG_JOINT_NAMES)
"""Default ``FitterConfig.regressor_joints``: the root orientation and the leg chain."""


@dataclass(frozen=True)
class FitterConfig:
    """Architecture and iteration settings (stored in every checkpoint).

    Attributes:
        hidden: GRU width (the paper: 1024; 256 holds 90 Hz on a 2-core CPU, see the README).
        layers: stacked GRU cells (the paper: 2).
        init_hidden: width of the Φ, Φh MLPs (the paper: 256).
        lg_hidden: width of the shared f_λγ MLP.
        iterations: N, fitting iterations per frame (the paper: 5).
        num_betas: shape coefficients the networks see (padded/truncated).
        dropout: dropout on GRU hidden states while training (the paper: 0.5).
        update_rule: ``"eq1"`` (λ·ΔΘ − γ·g, the paper) or ``"lgd"`` (λ = 1, γ = 0; Song 2020).
        carry: initial value of the streaming carry gate ``a`` (learned per parameter while
            training); ``1.0`` starts every frame exactly from the previous one (checkpoints
            from before the gate load with this value).
        motion: the networks also see motion features (``tracker.fitter.motion``);
            checkpoints from before them load with ``False``.
        regressor_joints: joints (``tracker.body.joints`` names) whose rotations the
            iterations leave as Φ set them (the root and the leg chain; none in checkpoints
            from before the option).
        data_term: weights of L_D.
    """

    hidden: int = 256
    layers: int = 2
    init_hidden: int = 256
    lg_hidden: int = 256
    iterations: int = 5
    num_betas: int = 16
    dropout: float = 0.0
    update_rule: Literal["eq1", "lgd"] = "eq1"
    carry: float = 0.9
    motion: bool = True
    regressor_joints: tuple[str, ...] = REGRESSOR_JOINT_NAMES
    data_term: DataTermConfig = field(default_factory=DataTermConfig)

    def __post_init__(self):
        names = tuple(self.regressor_joints)
        unknown = [n for n in names if n not in JOINT_NAMES]
        if unknown:
            raise ValueError(f"unknown joint name(s) {', '.join(unknown)} in regressor_joints "
                             f"(names as in tracker.body.joints.JOINT_NAMES, e.g. left_knee)")
        object.__setattr__(self, "regressor_joints", names)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regressor_joints"] = list(self.regressor_joints)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FitterConfig:
        d = dict(d)
        d.setdefault("carry", 1.0)  # written before the carry gate existed
        d.setdefault("motion", False)  # written before the motion features existed
        d.setdefault("regressor_joints", ())  # written before the option: all refined
        d["data_term"] = DataTermConfig(**{"floor": 0.0, **d.get("data_term", {})})
        return cls(**d)


@dataclass
class FitOutput:
    """One frame's fit, batch ``B``, stage frame.

    Attributes:
        theta: ``(B, 315)`` final parameters.
        hidden: ``(B, L, H)`` GRU state to carry to the next frame.
        residual: ``(B,)`` RMS data-term residual at ``theta``, metres.
        ok: ``(B,)`` bool; false where the fit diverged (then ``theta`` is the regressor's).
        motion: ``(B, MOTION_STATE_DIM)`` motion state to carry to the next frame.
        iterates: ``(N+1, B, 315)`` Θ0..ΘN (only when asked for).
    """

    theta: Tensor
    hidden: Tensor
    residual: Tensor
    motion: Tensor
    ok: Tensor
    iterates: Tensor | None = None


def carry_logit(a: float) -> float:
    """The logit of a carry gate value ``a``, clamped to ``[1e-4, 1 - 1e-6]``."""
    a = min(max(a, 1e-4), 1.0 - 1e-6)
    return math.log(a / (1.0 - a))


def observation_dim(cfg: FitterConfig) -> int:
    """Width of the network input D for ``cfg``."""
    return 61 + cfg.num_betas + (MOTION_FEATURE_DIM if cfg.motion else 0)


def encode_observations(sig: HeadsetSignals, betas: Tensor, num_betas: int,
                        motion: Tensor | None = None) -> Tensor:
    """Network input D ``(B, 61 + num_betas [+ MOTION_FEATURE_DIM])`` from canonical-frame
    signals, betas ``(B, K)`` and motion features ``(B, MOTION_FEATURE_DIM)`` (or ``None``).

    Head pose (position + 6D), wrist poses and fingertips zeroed where not visible, the
    visibility and tips-valid flags, the betas padded or cut to ``num_betas``, then the motion
    features.
    """
    B = sig.head.shape[0]
    vis = sig.visible.to(sig.head.dtype)
    tips_on = (sig.visible & sig.tips_valid).to(sig.head.dtype)
    head = torch.cat([sig.head[:, :3, 3], matrix_to_rotation_6d(sig.head[:, :3, :3])], -1)
    wrists = torch.cat([sig.wrists[..., :3, 3], matrix_to_rotation_6d(sig.wrists[..., :3, :3])], -1)
    wrists = (wrists * vis[..., None]).reshape(B, 18)
    tips = (sig.tips * tips_on[..., None, None]).reshape(B, 30)
    k = min(num_betas, betas.shape[-1])
    b = torch.zeros(B, num_betas, dtype=betas.dtype, device=betas.device)
    b = torch.cat([betas[:, :k], b[:, k:]], -1)
    parts = [head, wrists, tips, vis, tips_on, b]
    return torch.cat(parts if motion is None else [*parts, motion], -1)


class NeuralFitter(nn.Module):
    """The learned optimiser. Call :meth:`forward` once per frame for a batch of sessions."""

    def __init__(self, body: BodyModel, cfg: FitterConfig = FitterConfig()):
        super().__init__()
        self.body = body
        self.cfg = cfg
        d_in = observation_dim(cfg)
        H, L = cfg.hidden, cfg.layers
        self.phi = mlp(d_in, cfg.init_hidden, THETA_DIM)
        self.phi_h = mlp(d_in, cfg.init_hidden, L * H)
        self.gru = GRUStack(2 * THETA_DIM + d_in, H, L, cfg.dropout)
        self.delta_head = small_init_(nn.Linear(H, THETA_DIM))
        self.f_lg = nn.Sequential(nn.Linear(2 * RESIDUAL_DIM, cfg.lg_hidden), nn.ReLU())
        self.lam_head = small_init_(nn.Linear(cfg.lg_hidden, THETA_DIM))
        self.gam_head = small_init_(nn.Linear(cfg.lg_hidden, THETA_DIM))
        self.gamma_bias = -3.0  # softplus(-3) ≈ 0.05: a small gradient step at init
        self.carry_logit = nn.Parameter(torch.full((THETA_DIM,), carry_logit(cfg.carry)))
        # Φ predicts an offset from the rest pose (identity rotations, zero translation).
        rest = matrix_to_rotation_6d(torch.eye(3).expand(52, 3, 3)).reshape(-1)
        self.register_buffer("theta_rest", torch.cat([rest, torch.zeros(3)]))
        # 1 where the iterations may change Θ, 0 on the rotations of cfg.regressor_joints.
        refine = torch.ones(52, 6)
        refine[[JOINT_NAMES.index(n) for n in cfg.regressor_joints]] = 0.0
        self.register_buffer("refine_mask", torch.cat([refine.reshape(-1), torch.ones(3)]),
                             persistent=False)

    def with_iterations(self, n: int) -> NeuralFitter:
        """The same fitter (weights shared, not copied) running ``n`` iterations per frame:
        a light fit a server falls back to under load (``tracker.server.pacing``)."""
        if n < 1:
            raise ValueError(f"iterations must be at least 1, got {n}")
        view = copy.copy(self)  # a new attribute dict: its own cfg, the same submodules
        view.cfg = replace(self.cfg, iterations=n)
        return view

    @property
    def state_shape(self) -> tuple[int, int]:
        """Shape ``(L, H)`` of one session's hidden state."""
        return self.cfg.layers, self.cfg.hidden

    @property
    def motion_dim(self) -> int:
        """Width of one session's motion state (``tracker.fitter.motion``)."""
        return MOTION_STATE_DIM

    def forward(
        self,
        sig: HeadsetSignals,
        betas: Tensor,
        T_hmd: Tensor,
        theta_prev: Tensor | None = None,
        hidden_prev: Tensor | None = None,
        reset: Tensor | None = None,
        iterations: int | None = None,
        return_iterates: bool = False,
        motion_prev: Tensor | None = None,
        dt: Tensor | None = None,
    ) -> FitOutput:
        """Fit one frame for ``B`` sessions.

        Args:
            sig: stage-frame observations, batch ``(B,)``.
            betas: ``(B, K)`` body shapes.
            T_hmd: ``(4, 4)`` or ``(B, 4, 4)`` headset in the head-joint frame.
            theta_prev: ``(B, 315)`` previous frame's stage-frame Θ (streaming), or ``None``.
            hidden_prev: ``(B, L, H)`` previous hidden state, or ``None``.
            reset: ``(B,)`` bool: start from Φ, Φh instead of the previous frame. ``None``
                means all true (the paper's per-frame mode) unless a previous state is given.
            iterations: override N (``0`` = the regressor Φ alone).
            motion_prev: ``(B, MOTION_STATE_DIM)`` motion state after the previous frame, or
                ``None`` (no history). It is carried whether or not Θ is (per-frame fits of
                a stream can still see its history); ``reset`` rows start it afresh.
            dt: ``(B,)`` seconds since the previous frame (``None``: 1/60 s).
        """
        N = self.cfg.iterations if iterations is None else iterations
        B, dtype = betas.shape[0], sig.head.dtype
        C = heading_frame(sig.head)
        sig_c = signals_to_frame(sig, C)
        pelvis = self.body.rest_joints(betas)[:, 0]
        feats, motion = motion_step(sig, motion_prev, dt, reset, C)
        D = encode_observations(sig_c, betas, self.cfg.num_betas,
                                feats if self.cfg.motion else None)
        theta_reg = self.theta_rest + self.phi(D)
        h_reg = torch.tanh(self.phi_h(D)).reshape(B, *self.state_shape)
        if theta_prev is None or hidden_prev is None:
            theta, h = theta_reg, h_reg
        else:
            r = (torch.ones(B, dtype=torch.bool, device=D.device) if reset is None else reset)
            r = r.to(dtype)[:, None]
            gate = torch.sigmoid(self.carry_logit)
            warm = theta_reg + gate * (theta_to_frame(theta_prev, C, pelvis) - theta_reg)
            theta = r * theta_reg + (1 - r) * warm
            h = r[..., None] * h_reg + (1 - r[..., None]) * hidden_prev

        dcfg = self.cfg.data_term

        def evaluate(th: Tensor, with_grad: bool):
            # Kinematics stay in float32 under mixed-precision training (autocast on CUDA).
            if th.is_cuda and torch.is_autocast_enabled("cuda"):
                with torch.autocast("cuda", enabled=False):
                    return data_term(self.body, th.float(), betas.float(), sig_c, T_hmd, dcfg,
                                     with_grad)
            return data_term(self.body, th, betas, sig_c, T_hmd, dcfg, with_grad)

        out = evaluate(theta, N > 0)
        iterates = [theta]
        for n in range(N):
            g = out.grad
            x = torch.cat([torch.asinh(10.0 * g), theta, D], -1)
            top, h = self.gru(x, h)
            delta = self.delta_head(top)
            delta = self.refine_mask * delta
            if self.cfg.update_rule == "lgd":
                theta = theta + delta
            else:
                trial = evaluate(theta + delta, False)
                z = self.f_lg(torch.asinh(10.0 * torch.cat([out.residuals, trial.residuals], -1)))
                lam = 2.0 * torch.sigmoid(self.lam_head(z))
                gam = nn.functional.softplus(self.gam_head(z) + self.gamma_bias)
                theta = theta + lam * delta - self.refine_mask * (gam * g)
            out = evaluate(theta, n < N - 1)
            iterates.append(theta)

        residual = out.residual_m
        ok = torch.isfinite(theta).all(-1) & torch.isfinite(h).flatten(1).all(-1)
        ok = ok & (residual < DIVERGED_RESIDUAL_M)
        okf = ok.to(dtype)[:, None]
        theta = okf * torch.nan_to_num(theta) + (1 - okf) * theta_reg
        h = okf[..., None] * torch.nan_to_num(h) + (1 - okf[..., None]) * h_reg
        stage = theta_to_frame(theta, C, pelvis, inverse=True)
        its = None
        if return_iterates:
            its = torch.stack([theta_to_frame(t, C, pelvis, inverse=True) for t in iterates])
        return FitOutput(theta=stage, hidden=h, residual=residual, motion=motion, ok=ok,
                         iterates=its)
