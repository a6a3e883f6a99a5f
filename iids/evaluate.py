"""Metrics, `report.json`, `report.md` and the plots people look at.

Reports lead with macro-F1 (every class counts the same, which is what matters when attacks
are rare), then per-class precision / recall / F1, accuracy, the false-positive rate on benign
traffic, loss, inference time per row and the confusion matrix.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

logger = logging.getLogger(__name__)


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: list[str],
    negative_class: str,
) -> dict[str, Any]:
    """The report's metrics for one model on one split.

    Args:
        y_true, y_pred: int64 class codes, shape (N,).
        proba: float probabilities, shape (N, C), for the loss (None: no loss).
        classes: class names by code.
        negative_class: the benign class, for the false-positive rate.
    """
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    benign = classes.index(negative_class)
    is_benign = y_true == benign
    fpr = float((y_pred[is_benign] != benign).mean()) if is_benign.any() else None
    loss = None
    if proba is not None and len(y_true):
        clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
        clipped /= clipped.sum(axis=1, keepdims=True)
        loss = float(log_loss(y_true, clipped, labels=labels))
    present = sorted(set(np.unique(y_true).tolist()))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": per_class,
        "fpr": fpr,
        "loss": loss,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def macro_f1_from_confusion(cm: np.ndarray) -> float:
    """Macro-F1 over the classes present in a confusion matrix (rows: true)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    present = support > 0
    return float(f1[present].mean()) if present.any() else 0.0


def _distinct(a: float, b: float) -> tuple[str, str]:
    """`a` and `b` with 4 decimals, or as many more (up to 8) as tell them apart."""
    digits = 4
    while digits < 8 and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return f"{a:.{digits}f}", f"{b:.{digits}f}"


def latency_us_per_row(predict, features: np.ndarray, batch_size: int = 4096) -> float:
    """Microseconds per row of `predict` on batches of `batch_size`, one process."""
    batch = features[:batch_size]
    if len(batch) < batch_size:
        reps = -(-batch_size // max(len(batch), 1))
        batch = np.concatenate([batch] * reps)[:batch_size]
    predict(batch)  # warm-up
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) / batch_size * 1e6)


# -- plots ----------------------------------------------------------------------------


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_png(cm: list[list[int]], classes: list[str], title: str) -> bytes:
    """A row-normalised confusion matrix (share of each true class) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(cm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        share = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    size = 1.2 + 0.75 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    f"{share[i, j]:.3f}\n{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                )
    fig.colorbar(image, ax=ax, label="share of true class")
    return _figure_bytes(fig)


def curves_png(history: list[dict[str, float]]) -> bytes:
    """Training loss, validation loss and validation macro-F1 per epoch, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss")
    left.set_yscale("log")
    left.legend()
    right.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", color="C2")
    right.set_xlabel("epoch")
    right.set_ylabel("validation macro-F1")
    fig.suptitle("training curves")
    return _figure_bytes(fig)


def class_counts_png(before: dict[str, int], after: dict[str, int]) -> bytes:
    """Training rows per class before and after balancing (log scale), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(before)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names), 3.8))
    ax.bar(x - 0.2, [before[n] for n in names], 0.4, label="before")
    ax.bar(x + 0.2, [after[n] for n in names], 0.4, label="after SMOTE")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("training rows")
    ax.legend()
    ax.set_title("class balance of the training split")
    return _figure_bytes(fig)


# -- report.md ------------------------------------------------------------------------


def report_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of `report.json`."""
    rows = report["rows"]
    lines = [
        f"# iids evaluation: {report['dataset']} / {report['task']}",
        "",
        f"Model bundle: `{report['model_bundle']}`  ",
        f"Protocol: **{report['protocol']}**  ",
        f"Rows: {rows['read']:,} read, {rows['train']:,} train "
        f"({rows['train_after_smote']:,} after SMOTE), {rows['val']:,} validation, "
        f"{rows['test']:,} test; {rows['duplicates_removed']:,} duplicates removed; "
        f"{rows['train_test_overlap']:,} test rows also in train.",
        "",
        "| model | macro-F1 | accuracy | weighted-F1 | benign FPR | µs/row |",
        "|---|---:|---:|---:|---:|---:|",
        _summary_row("hybrid ResNet-1D/BiGRU/MHA", report),
    ]
    if report.get("baseline"):
        lines.append(_summary_row("gradient-boosted trees", report["baseline"]))
    lines += [
        "",
        "## Per class (hybrid model, test split)",
        "",
        "| class | precision | recall | F1 | support |"
        + (" baseline recall |" if report.get("baseline") else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if report.get("baseline") else ""),
    ]
    for name, m in report["per_class"].items():
        line = (
            f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | "
            f"{m['support']:,} |"
        )
        if report.get("baseline"):
            line += f" {report['baseline']['per_class'][name]['recall']:.4f} |"
        lines.append(line)
    lines += _protocols_markdown(report)
    training = report.get("training", {})
    if training:
        lines += [
            "",
            "## Training",
            "",
            f"{training.get('epochs_run')} epoch(s) on {training.get('num_workers')} "
            f"worker(s), {training.get('rows_per_epoch'):,} rows per epoch "
            f"(sampling: {training.get('sampling')}); best validation macro-F1 "
            f"{training.get('best_val_macro_f1', 0):.4f} at epoch "
            f"{training.get('best_epoch')}.",
        ]
    lines += [
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![training curves](training_curves.png)",
        "",
        "![class balance](class_counts.png)",
        "",
    ]
    return "\n".join(lines)


def _protocols_markdown(report: dict[str, Any]) -> list[str]:
    """Both protocols side by side, and where the deep model trails the baseline."""
    protocols = report.get("protocols") or {}
    if len(protocols) < 2:
        return []
    lines = [
        "",
        "## Protocols side by side",
        "",
        "`paper`: stratified random split, duplicates kept (comparable with published "
        "numbers). `honest`: duplicates removed before the split, no feature vector in "
        "two parts, preprocessing and SMOTE fitted on train only.",
        "",
        "| protocol | test rows | duplicates removed | test rows also in train "
        "| macro-F1 | baseline macro-F1 | accuracy | benign FPR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in protocols.items():
        base = p.get("baseline") or {}
        base_f1 = f"{base['macro_f1']:.4f}" if base else "n/a"
        fpr = "n/a" if p.get("fpr") is None else f"{p['fpr']:.5f}"
        lines.append(
            f"| {name} | {p['rows']['test']:,} | {p['rows']['duplicates_removed']:,} | "
            f"{p['rows']['train_test_overlap']:,} | {p['macro_f1']:.4f} | {base_f1} | "
            f"{p['accuracy']:.4f} | {fpr} |"
        )
    for name, p in protocols.items():
        base = p.get("baseline")
        if base and p["macro_f1"] < base["macro_f1"]:
            ours, theirs = _distinct(p["macro_f1"], base["macro_f1"])
            lines += [
                "",
                f"Under `{name}` the hybrid model falls short of the tree baseline "
                f"(macro-F1 {ours} vs {theirs}). Per class:",
                "",
                "| class | support | hybrid recall | baseline recall | hybrid F1 "
                "| baseline F1 |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for cls, m in p["per_class"].items():
                b = base["per_class"][cls]
                lines.append(
                    f"| {cls} | {m['support']:,} | {m['recall']:.4f} | "
                    f"{b['recall']:.4f} | {m['f1']:.4f} | {b['f1']:.4f} |"
                )
    return lines


def _summary_row(name: str, m: dict[str, Any]) -> str:
    fpr = "n/a" if m.get("fpr") is None else f"{m['fpr']:.5f}"
    latency = m.get("latency_us_per_row")
    latency_text = "n/a" if latency is None else f"{latency:.2f}"
    return (
        f"| {name} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | {m['weighted_f1']:.4f} "
        f"| {fpr} | {latency_text} |"
    )


# -- evaluating a saved bundle --------------------------------------------------------


class _LabelledScorer:
    """A Ray Data actor: true and predicted class codes, and probabilities, per row."""

    def __init__(self, bundle_uri: str, storage: Any):
        from iids.scoring import Scorer

        self.scorer = Scorer.from_uri(bundle_uri, storage, threads=1)

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        from iids.train import encode_labels

        predicted, proba = self.scorer.score(batch)
        return {
            "y_true": encode_labels(batch, self.scorer.bundle.task),
            "y_pred": predicted,
            "proba": proba,
        }


def evaluate_bundle(
    bundle_uri: str, data_uri: str, *, storage: Any = None
) -> dict[str, Any]:
    """Score every row of a labelled, ingested dataset with a bundle; return metrics.

    Raises:
        FileNotFoundError: no such bundle or dataset.
        ValueError: a row's label is not a class of the bundle's task.
    """
    import ray
    import ray.data

    from iids.bundle import load_bundle
    from iids.data import read_dataset
    from iids.storage import Storage

    storage = storage or Storage()
    bundle = load_bundle(bundle_uri, storage)
    columns = [*bundle.preprocessor.input_columns, bundle.task.label_column]
    ds = read_dataset(data_uri, storage, columns=columns).map_batches(
        _LabelledScorer,
        fn_constructor_args=(bundle_uri, storage),
        batch_format="pyarrow",
        batch_size=4096,
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    parts = [ray.get(ref) for ref in ds.to_arrow_refs()]
    y_true = np.concatenate([p["y_true"].to_numpy() for p in parts])
    y_pred = np.concatenate([p["y_pred"].to_numpy() for p in parts])
    proba = np.concatenate(
        [np.stack(p["proba"].to_numpy(zero_copy_only=False)) for p in parts]
    )
    negative = bundle.adapter.negative_class[bundle.task.name]
    metrics = classification_metrics(y_true, y_pred, proba, bundle.classes, negative)
    return {
        "model_bundle": bundle_uri,
        "model_version": bundle.version,
        "data": data_uri,
        "task": bundle.task.name,
        "classes": bundle.classes,
        "scored_rows": len(y_true),
        **metrics,
    }
