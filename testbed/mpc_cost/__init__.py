"""MPC training traffic of the "joint" baseline: one model trained on both parties' data under MPC.

- :mod:`testbed.mpc_cost.crypten_measure`: measured, two-party CrypTen training of the same
  architecture and batch size (optional extra; ``None`` when CrypTen is unavailable);
- :mod:`testbed.mpc_cost.cost_model`: an analytical model of the same protocol, checked against
  the measurement, which needs nothing beyond torch.

Published figures, which only the analysis reads, are in :mod:`analysis.published_mpc`.
See ``docs/mpc.md``.
"""
