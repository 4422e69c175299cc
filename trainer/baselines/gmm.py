"""A Gaussian-mixture pose prior for the classic L-BFGS baseline (SMPLify-style, Bogo et al. 2016).

The mixture is fitted by EM (full covariances, k-means++ start) on the 63 body-pose
axis-angle values (joints 1-21, AMASS ``poses[:, 3:66]``) of training motions. The prior
term is the paper's Eq. 7 (Choutas et al. 2022), the negative log-likelihood of the *best*
component::

    L_GMM(θ) = min_j [ -log w_j - log N(θ; μ_j, Σ_j) ]

File format (``.npz``): ``weights (K,)``, ``means (K, 63)``, ``covariances (K, 63, 63)``,
``num_samples ()``, float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

POSE_SLICE = slice(3, 66)  # AMASS layout: 21 body joints after the global orientation
POSE_DIM = 63
GMM_FIT_VERSION = 2  # bump when fit_gmm changes (invalidates cached priors)


@dataclass
class GaussianMixture:
    """``weights (K,)``, ``means (K, D)``, ``covariances (K, D, D)``; ``num_samples`` fitted on."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    num_samples: int = 0

    @property
    def components(self) -> int:
        return len(self.weights)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:  # np.savez on a handle: no ".npz" appended to the name
            np.savez(fh, weights=self.weights, means=self.means, covariances=self.covariances,
                     num_samples=np.int64(self.num_samples))
        return path

    @classmethod
    def load(cls, path: str | Path) -> GaussianMixture:
        """Read a mixture written by :meth:`save`; ``ValueError`` if it is not one."""
        try:
            with np.load(Path(path).expanduser()) as z:
                gmm = cls(z["weights"].astype(np.float64), z["means"].astype(np.float64),
                          z["covariances"].astype(np.float64), int(z["num_samples"]))
        except (OSError, KeyError, ValueError) as exc:
            from tracker.errors import describe_file

            kind = describe_file(Path(path).expanduser())
            why = kind if kind != "a NumPy .npz archive" else (
                "an .npz without weights, means and covariances" if isinstance(exc, KeyError)
                else str(exc))
            raise ValueError(f"{path}: not a pose GMM file ({why}; expected one written by "
                             "trainer fit-gmm)") from exc
        K, D = gmm.means.shape
        if gmm.weights.shape != (K,) or gmm.covariances.shape != (K, D, D):
            raise ValueError(f"{path}: inconsistent GMM shapes")
        return gmm

    def log_prob_components(self, x: np.ndarray) -> np.ndarray:
        """``log(w_j N(x; μ_j, Σ_j))`` ``(N, K)`` for samples ``x (N, D)``."""
        return _log_weighted_densities(x, self.weights, self.means, self.covariances)


def _log_weighted_densities(x, weights, means, covs) -> np.ndarray:
    N, D = x.shape
    out = np.empty((N, len(weights)))
    for k in range(len(weights)):
        L = np.linalg.cholesky(covs[k])
        z = np.linalg.solve(L, (x - means[k]).T)  # (D, N)
        logdet = 2.0 * np.log(np.diag(L)).sum()
        out[:, k] = (np.log(weights[k]) - 0.5 * (z * z).sum(0)
                     - 0.5 * (D * math.log(2 * math.pi) + logdet))
    return out


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centers.append(x[rng.choice(len(x), p=p)])
        d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    return np.stack(centers)


def fit_gmm(x: np.ndarray, components: int = 8, iterations: int = 200, tol: float = 1e-6,
            reg: float = 1e-3, seed: int = 0) -> GaussianMixture:
    """Fit a full-covariance mixture to samples ``x (N, D)`` by EM.

    Args:
        components: K (the paper / SMPLify: 8). iterations: EM steps at most.
        tol: stop when the mean log-likelihood improves by less than this.
        reg: added to every covariance diagonal (rad²), keeps them positive definite.
        seed: k-means++ initialisation seed.
    """
    x = np.asarray(x, dtype=np.float64)
    N, D = x.shape
    if N < 2:
        raise ValueError(f"need at least 2 pose samples to fit a GMM, got {N}")
    K = min(components, N)
    rng = np.random.default_rng(seed)
    means = _kmeans_pp(x, K, rng)
    for _ in range(10):  # a few Lloyd steps
        lab = ((x[:, None] - means[None]) ** 2).sum(-1).argmin(1)
        means = np.stack([x[lab == k].mean(0) if (lab == k).any() else means[k]
                          for k in range(K)])
    resp = np.eye(K)[lab]
    prev = -np.inf
    weights = covs = None
    for _ in range(iterations):
        # M step
        nk = resp.sum(0) + 1e-10
        weights = nk / N
        means = (resp.T @ x) / nk[:, None]
        covs = np.empty((K, D, D))
        for k in range(K):
            d = x - means[k]
            covs[k] = (resp[:, k, None] * d).T @ d / nk[k] + reg * np.eye(D)
        # E step
        logp = _log_weighted_densities(x, weights, means, covs)
        m = logp.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logp - m).sum(1))
        resp = np.exp(logp - lse[:, None])
        ll = lse.mean()
        if ll - prev < tol:
            break
        prev = ll
    return GaussianMixture(weights, means, covs, N)


def pose_samples(poses: list[np.ndarray], max_samples: int = 50_000, seed: int = 0) -> np.ndarray:
    """Body-pose samples ``(M, 63)`` from AMASS-layout ``(N_i, 156)`` arrays, at most
    ``max_samples`` (a seeded uniform subset of all frames)."""
    x = np.concatenate([np.asarray(p, dtype=np.float64)[:, POSE_SLICE] for p in poses])
    if len(x) > max_samples:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_samples, replace=False))]
    return x


class MaxMixturePrior(nn.Module):
    """Eq. 7 in torch: ``pose (B, 63)`` -> ``(B,)`` ``min_j -log(w_j N(pose; μ_j, Σ_j))``."""

    def __init__(self, gmm: GaussianMixture):
        super().__init__()
        prec_chol = []
        const = []
        D = gmm.means.shape[1]
        for k in range(gmm.components):
            L = np.linalg.cholesky(gmm.covariances[k])
            Linv = np.linalg.inv(L)  # Σ^-1 = Linv^T Linv
            prec_chol.append(Linv)
            const.append(-math.log(gmm.weights[k]) + 0.5 * (D * math.log(2 * math.pi)
                                                             + 2.0 * np.log(np.diag(L)).sum()))
        self.register_buffer("means", torch.tensor(gmm.means))  # (K, D)
        self.register_buffer("prec_chol", torch.tensor(np.stack(prec_chol)))  # (K, D, D)
        self.register_buffer("const", torch.tensor(const))  # (K,)

    def forward(self, pose: Tensor) -> Tensor:
        d = pose[:, None, :] - self.means.to(pose.dtype)  # (B, K, D)
        z = torch.einsum("kij,bkj->bki", self.prec_chol.to(pose.dtype), d)
        nll = 0.5 * (z * z).sum(-1) + self.const.to(pose.dtype)  # (B, K)
        return nll.min(-1).values
