"""Figures printed in the secure-training literature, with their settings
(:mod:`analysis.mpc.published`); the measured and modelled MPC traffic of the joint baseline is
in :mod:`testbed.mpc`. See ``docs/mpc.md``.
"""
