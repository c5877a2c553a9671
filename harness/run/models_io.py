"""A run's saved models as the CLI meets them: where a run keeps them, `--model`, `--arpa`, `export`.

Every run writes each fitted configuration's model to RUN/models/<key>.pt (harness.models.store),
the key's spaces written as "_": `order=3 count smoothing=kn` -> `order=3_count_smoothing=kn.pt`.
`score`/`sample --model PATH` take such a file, or the run folder plus the configuration's
`--order` and `--smoothing`; `--arpa FILE` takes any ARPA file. Either replaces the fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError, input_file_problem
from harness.data.corpus import Corpus, Vocab
from harness.models.families import count_point, family
from harness.models.store import SUFFIX, can_save, load_model, save_model, training_sha256

MODELS_DIR = "models"


def model_filename(key: str) -> str:
    return key.replace(" ", "_").replace("/", "-") + SUFFIX


def save_fitted(run_dir: Path, point: dict, key: str, model, vocab: Vocab, train: Corpus, record: dict) -> str | None:
    """Save one configuration's fitted model into run_dir/models/; its path relative to run_dir, or None
    where the family's model has no saved form (store's docstring: the hook)."""
    if not can_save(model):
        return None
    weights = None if train.weights is None else train.item_weights().tolist()
    meta = {"key": key, "point": {k: v for k, v in point.items() if v is None or isinstance(v, (str, int, float))},
            "settings": model.settings(), "smoothing": record.get("smoothing"),
            "train_sha256": training_sha256(train.items, weights), "corpus": train.name}
    path = save_model(model, run_dir / MODELS_DIR / model_filename(key), vocab, point["method"], meta)
    return None if path is None else str(path.relative_to(run_dir))


@dataclass
class Loaded:
    """A model the CLI uses instead of fitting one: its vocabulary, device and what it was."""

    model: object
    vocab: Vocab
    device: object
    description: str


def resolve_model_file(spec: str, order: int, smoothing: str, label: str = "--model") -> Path:
    """--model PATH: a model file as given, or in a run folder the file of count configuration --order/--smoothing.

    label: how errors name `spec`; another label than --model (export's) takes run folders only."""
    path = Path(spec)
    files_too = label == "--model"
    if path.is_file():
        return path
    if not path.is_dir():
        raise HarnessError(f"{label} {spec!r} {input_file_problem(path)}; give a model file (RUN/models/*.pt) or a run folder")
    folder = path / MODELS_DIR
    if not folder.is_dir():
        raise HarnessError(f"{label} {spec!r} has no {MODELS_DIR}/ folder; give the folder of a run made by this version"
                           + (", or a model file" if files_too else ""))
    point = count_point(order, smoothing)
    file = folder / model_filename(family("count").key(point))
    if not file.is_file():
        saved = sorted(p.stem for p in folder.glob("*" + SUFFIX))
        raise HarnessError(f"{label} {spec!r} has no model of order {order} smoothing {smoothing} (saved: {', '.join(saved) or 'none'}); "
                           "pass that configuration's --order and --smoothing" + (", or its file" if files_too else ""))
    return file


def load_saved(spec: str, order: int, smoothing: str, device, label: str = "--model") -> Loaded:
    file = resolve_model_file(spec, order, smoothing, label)
    model, vocab, payload = load_model(file, device)
    meta = payload.get("meta", {})
    sha = str(meta.get("train_sha256", "?"))[:12]
    return Loaded(model, vocab, device, f"model: loaded {file} ({meta.get('key', payload['class'])}, "
                                       f"trained on {meta.get('corpus', '?')} split sha256 {sha}), not refitted")


def load_arpa_model(path, device) -> Loaded:
    from harness.models.arpa import read_arpa
    from harness.models.arpa_text import description

    model, vocab = read_arpa(path)
    return Loaded(model.to(device), vocab, device, description(path, model.order, sum(model.num_ngrams()), vocab.size - 1))


def export_arpa(run_dir: str, order: int, smoothing: str, out) -> str:
    """Write the saved model of a run's count configuration as an ARPA file; the line to print."""
    from harness.models.arpa import write_arpa

    if Path(run_dir).is_file():
        raise HarnessError(f"export: {run_dir!r} is a file; give the run folder that holds it (export finds the model "
                           "in its models/ by --order and --smoothing)")
    if not Path(run_dir).is_dir():
        raise HarnessError(f"export: run folder {run_dir!r} does not exist; give the folder of a finished run")
    loaded = load_saved(run_dir, order, smoothing, "cpu", label="export: run folder")
    backoff = write_arpa(loaded.model, out, loaded.vocab)
    # as the file's data section counts them: the unigrams add <s> and <unk> to the model's own
    counts = ", ".join(f"{n + (2 if k == 0 else 0):,}" for k, n in enumerate(backoff.num_ngrams()))
    return f"wrote {out}: order {backoff.order} ARPA ({counts} n-grams per order) from {loaded.description.removeprefix('model: loaded ')}"


class _TableScorer:
    """An n-gram model with a dense log-prob table, its table computed once (not once per chunk)."""

    def __init__(self, model):
        self.order, self.vocab_size = model.order, model.vocab_size
        self.table = model.log_prob_table().flatten()

    def score(self, context, target):
        return self.table[context * self.vocab_size + target]


def file_scorer(model):
    """The fastest equal scorer of a model for streamed scoring: ARPA and smoothed models in their backoff
    form compiled to one lookup per token (harness.models.rows; equal to float64 rounding), dense
    tables computed once."""
    from harness.models.backoff import BackoffModel, to_backoff
    from harness.models.rows import compile_rows
    from harness.models.smoothed import SmoothedModel

    if isinstance(model, (BackoffModel, SmoothedModel)):
        backoff = to_backoff(model)
        return compile_rows(backoff) or backoff
    if model.log_prob_table() is not None:
        return _TableScorer(model)
    return model


def score_file(model, path, vocab: Vocab, device, max_memory) -> str:
    """Score a file of items chunk by chunk within max_memory ("auto": DEFAULT_STREAM_BYTES); the line to print."""
    from harness.cli_fast import check_score_file, file_score_line
    from harness.core.memory import parse_bytes
    from harness.models.backoff import DEFAULT_STREAM_BYTES, score_file_streamed

    check_score_file(path)
    if getattr(model, "order", None) is None:
        raise HarnessError("--file without --per-item streams n-gram models only; add --per-item OUT.csv for this model")
    budget = parse_bytes(max_memory)
    return file_score_line(path, score_file_streamed(file_scorer(model), path, vocab, budget or DEFAULT_STREAM_BYTES, device))
