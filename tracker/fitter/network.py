"""Network pieces of the fitter, built from Linear/LayerNorm/sigmoid/tanh only.

TensorRT has no converter for ``nn.GRU``, and the paper's GRU has layer normalisation
inside the gates anyway (Choutas et al. 2022, Sup. Mat. Eq. 12)::

    z = σ(LN(W_z x) + LN(U_z h))      r = σ(LN(W_r x) + LN(U_r h))
    ĥ = tanh(LN(W_h x) + LN(U_h (r ⊙ h)))      h' = (1 - z) ⊙ h + z ⊙ ĥ
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerNormGRUCell(nn.Module):
    """One GRU cell with layer-normalised gates: ``x (B, in), h (B, H) -> (B, H)``."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.W = nn.Linear(in_dim, 3 * hidden, bias=False)
        self.U_zr = nn.Linear(hidden, 2 * hidden, bias=False)
        self.U_h = nn.Linear(hidden, hidden, bias=False)
        self.ln_x = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(3))
        self.ln_h = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(3))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        wz, wr, wh = self.W(x).chunk(3, dim=-1)
        uz, ur = self.U_zr(h).chunk(2, dim=-1)
        z = torch.sigmoid(self.ln_x[0](wz) + self.ln_h[0](uz))
        r = torch.sigmoid(self.ln_x[1](wr) + self.ln_h[1](ur))
        h_new = torch.tanh(self.ln_x[2](wh) + self.ln_h[2](self.U_h(r * h)))
        return (1 - z) * h + z * h_new


class GRUStack(nn.Module):
    """``layers`` stacked cells; the hidden state is ``(B, layers, H)``."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float = 0.0):
        super().__init__()
        self.cells = nn.ModuleList(
            LayerNormGRUCell(in_dim if i == 0 else hidden, hidden) for i in range(layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, in)``, ``h (B, L, H)`` -> top output ``(B, H)``, new state ``(B, L, H)``."""
        outs = []
        for i, cell in enumerate(self.cells):
            x = cell(x, h[:, i])
            outs.append(x)
            x = self.dropout(x)  # the paper's dropout on hidden states (p = 0.5), training only
        return outs[-1], torch.stack(outs, 1)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """``layers`` × (Linear, BatchNorm, ReLU) then a Linear head (the paper's Φ and Φh)."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def small_init_(layer: nn.Linear, gain: float = 0.01) -> nn.Linear:
    """Xavier init with a small gain for output layers (Sup. Mat. 6.4), zero bias."""
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer
