"""The neural fitter (Choutas et al. 2022): data term, network, update rule, streaming."""
