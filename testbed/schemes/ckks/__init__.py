"""CKKS secure inference (CryptoNets-style feature-major packing): the plan from the circuit's
depth (:mod:`.plan`), the model lowered to a circuit (:mod:`.circuit`), SEAL's operations
(:mod:`.crypto`), bytes on the wire (:mod:`.wire`), the byte accounting (:mod:`.accounting`) and
the registered scheme with its two modes (:mod:`.scheme`)."""
