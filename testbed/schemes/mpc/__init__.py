"""Two-party secret-sharing secure inference with CrypTen (``scheme: {kind: mpc}``; docs/mpc.md)."""
