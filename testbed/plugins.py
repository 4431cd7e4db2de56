"""The built-in components: importing this module registers every one of them.

One explicit list, so a reader sees in one place what a scenario may name, and adding a built-in
attack, filter or scheme is one new file plus one name here. :func:`testbed.registry.load_builtins`
imports this module on the first registry lookup.
"""

from attacks import adaptive, backdoor, distill_backdoor, distillation, label_flip, manipulation
from attacks import confidence as confidence_attacks
from testbed import datasets, models, splits
from testbed.filters import agreement, class_floor, divergence, kl_cap, lacking_classes, own_confidence, top_k, true_label, trust
from testbed.filters import confidence as confidence_filter
from testbed.protocols import fedavg, joint, local, smule
from testbed.schemes import plaintext
from testbed.schemes.ckks import scheme as ckks
from testbed.schemes.mpc import scheme as mpc

BUILTIN_MODULES = (
    datasets, splits, models,
    backdoor, label_flip, manipulation, adaptive, confidence_attacks, distillation, distill_backdoor,
    agreement, confidence_filter, divergence, kl_cap, top_k, true_label, trust, own_confidence, lacking_classes, class_floor,
    plaintext, ckks, mpc,
    smule, local, joint, fedavg,
)
