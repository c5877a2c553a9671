"""Constants the whole harness shares, each written once."""

LECTURE_SEED = 2147483647  # the lecture's torch.Generator seed: split, initialisation and sampling default
