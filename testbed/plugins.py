"""The built-in components: importing this module registers every one of them.

One explicit list, so a reader sees in one place what a scenario may name, and adding a built-in
attack, filter or scheme is one new file plus one line here. :func:`testbed.registry.load_builtins`
imports this module on the first registry lookup.
"""

from attacks import adaptive, backdoor, label_flip, manipulation  # noqa: F401
from testbed import datasets, models, splits  # noqa: F401
from testbed.filters import agreement, confidence, divergence, kl_cap, top_k, true_label, trust  # noqa: F401
from testbed.protocols import fedavg, joint, local, smule  # noqa: F401
from testbed.schemes import plaintext  # noqa: F401
from testbed.schemes.ckks import scheme as ckks  # noqa: F401
