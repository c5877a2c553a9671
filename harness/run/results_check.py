"""The value types inside a run's results.json, checked before anything renders or compares them.

`report`, `compare` and `run --resume` read results.json back; a record edited by hand (or by another
program) with a string where an NLL belongs would otherwise surface as a traceback deep in rendering.
Each check names the record, the field and what it must be, in one line.
"""
from __future__ import annotations

from harness.core.errors import HarnessError

NUMBERS = ("train_nll", "dev_nll", "test_nll", "train_ppl", "dev_ppl", "test_ppl", "fit_seconds", "steps_per_second",
           "nll_vs_count", "max_prob_diff", "lambda", "new_share", "heldout_share", "smoothing", "count_nll",
           "count_train_nll", "count_k", "reg", "lr", "best_dev_nll", "compile_seconds")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numbers(x) -> bool:
    return isinstance(x, list) and all(_number(v) for v in x)


def check_results(path, data: dict, fix: str) -> None:
    """HarnessError naming the first value of the wrong type in `data` (results.json as loaded)."""
    run = data["run"]

    def bad(where: str, field: str, what: str, value) -> HarnessError:
        return HarnessError(f"{path}: {where}'s {field!r} must be {what}, got {str(value)[:40]!r}; {fix}")

    items = run.get("split_items")
    if items is not None and not (isinstance(items, dict) and all(
            isinstance(v, dict) and _numbers(v.get("chars")) and _numbers(v.get("copies"))
            and len(v["chars"]) == len(v["copies"]) for v in items.values())):
        raise bad("the run", "split_items", "split -> {chars, copies} lists of numbers of one length", items)
    for field in ("hashes", "corpus", "environment"):
        if run.get(field) is not None and not isinstance(run[field], dict):
            raise bad("the run", field, "an object", run[field])
    seed = run["config"].get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise bad("the run's config", "seed", "a whole number", seed)
    for i, r in enumerate(data["results"]):
        where = f"record {i}"
        if not (r["order"] is None or (isinstance(r["order"], int) and not isinstance(r["order"], bool))):
            raise bad(where, "order", "a whole number or null", r["order"])
        for field in NUMBERS:
            if r.get(field) is not None and not _number(r[field]):
                raise bad(where, field, "a number or null", r[field])
        for split in ("train", "dev", "test"):
            ci = r.get(f"{split}_nll_ci")
            if ci is not None and not (_numbers(ci) and len(ci) == 2):
                raise bad(where, f"{split}_nll_ci", "[low, high]", ci)
        per_item = r.get("item_nll")
        if per_item is not None:
            if not isinstance(per_item, dict) or not all(_numbers(v) for v in per_item.values()):
                raise bad(where, "item_nll", "split -> a list of numbers", per_item)
            for split, values in per_item.items():
                if isinstance(items, dict) and split in items and len(values) != len(items[split]["chars"]):
                    raise bad(where, f"item_nll[{split!r}]", f"{len(items[split]['chars'])} numbers (one per item)",
                              f"{len(values)} numbers")
        if r.get("samples") is not None and not (isinstance(r["samples"], list) and all(isinstance(s, str) for s in r["samples"])):
            raise bad(where, "samples", "a list of names", r["samples"])
        if r.get("train_losses") is not None and not (isinstance(r["train_losses"], list)
                                                      and all(v is None or _number(v) for v in r["train_losses"])):
            raise bad(where, "train_losses", "a list of numbers", r["train_losses"])
        for field in ("tuning", "dev_curve"):
            if r.get(field) is not None and not (isinstance(r[field], list) and all(isinstance(t, dict) for t in r[field])):
                raise bad(where, field, "a list of objects", r[field])
