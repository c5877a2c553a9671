"""The memory budget of a dense (V^(n-1), V) table, shared by the count and gradient models."""
from __future__ import annotations

from harness.core.errors import HarnessError

DEFAULT_TABLE_BUDGET_BYTES = 2 * 1024**3


def dense_table_fits(vocab_size: int, order: int, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES) -> bool:
    return vocab_size**order * 8 <= budget_bytes


def check_dense_table(vocab_size: int, order: int, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES) -> None:
    """Raise a HarnessError when a dense V^n float64 table would not fit the memory budget."""
    need = vocab_size**order * 8
    if need > budget_bytes:
        raise HarnessError(
            f"a dense order-{order} table over {vocab_size} tokens needs {need / 2**30:.1f} GiB, "
            f"past the dense-table budget of {budget_bytes / 2**30:.1f} GiB; use a lower --order "
            "or a corpus with fewer distinct characters"
        )
