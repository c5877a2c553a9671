"""Constants the whole harness shares, each written once."""
import math

LECTURE_SEED = 2147483647  # the lecture's torch.Generator seed: split, initialisation and sampling default
BOUNDARY = 0  # id of the start/end token, printed as "."
BOUNDARY_CHAR = "."
LN10 = math.log(10.0)  # nats per log10 unit (ARPA files and KenLM count in log10)
