"""Communication of the "joint" baseline: one model trained on both parties' data under MPC.

Three sources, each labelled as such wherever it is reported:

- :mod:`analysis.mpc.crypten_measure`: measured, two-party CrypTen training of the same
  architecture and batch size (optional extra; ``None`` when CrypTen is unavailable);
- :mod:`analysis.mpc.cost_model`: an analytical model of the same protocol, checked against
  the measurement, which needs nothing beyond torch;
- :mod:`analysis.mpc.published`: figures printed in the secure-training literature, with
  their settings.

See ``docs/mpc.md``.
"""
