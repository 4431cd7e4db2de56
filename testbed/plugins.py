"""The built-in components: importing this module registers every one of them.

One explicit list, so a reader sees in one place what a scenario may name, and adding a built-in
attack, filter or scheme is one new file plus one name here. :func:`testbed.registry.load_builtins`
imports this module on the first registry lookup.
"""

from attacks import adaptive, backdoor, confidence, distill_backdoor, distillation, label_flip, manipulation
from testbed import datasets, models, splits
from testbed.filters import agreement, class_floor, confidence, divergence, kl_cap, lacking_classes, own_confidence, top_k, true_label, trust
from testbed.protocols import fedavg, joint, local, smule
from testbed.schemes import plaintext
from testbed.schemes.ckks import scheme as ckks

BUILTIN_MODULES = (
    datasets, splits, models,
    backdoor, label_flip, manipulation, adaptive, confidence, distillation, distill_backdoor,
    agreement, confidence, divergence, kl_cap, top_k, true_label, trust, own_confidence, lacking_classes, class_floor,
    plaintext, ckks,
    smule, local, joint, fedavg,
)
