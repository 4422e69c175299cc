"""Baselines the learned fitter is compared with in ``trainer eval``.

* :mod:`trainer.baselines.lbfgs`: the classic optimisation baseline (data term + GMM pose prior
  + gravity term, L-BFGS; Choutas et al. 2022, Eq. 6-7, Tab. 2);
* :mod:`trainer.baselines.gmm`: the Gaussian-mixture pose prior it uses (EM fit, Eq. 7).

The regressor Φ (N = 0) and LGD (λ = 1, γ = 0) baselines are the fitter itself, run with
``iterations=0`` or a checkpoint trained with ``FitterConfig(update_rule="lgd")``.
"""

from trainer.baselines.gmm import GaussianMixture, MaxMixturePrior, fit_gmm, pose_samples
from trainer.baselines.lbfgs import LBFGSConfig, fit_lbfgs

__all__ = ["GaussianMixture", "LBFGSConfig", "MaxMixturePrior", "fit_gmm", "fit_lbfgs",
           "pose_samples"]
