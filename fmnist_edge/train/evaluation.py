"""Evaluation reports: test metrics, classification report, confusion matrix, curves, example grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import contract, data
from ..atomic import atomic_file, write_json, write_text
from ..errors import require


def predict_probs(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 10) float32 probabilities from a Keras model."""
    return np.asarray(model.predict(data.normalize(images), batch_size=batch_size, verbose=0), dtype=np.float32)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, cross-entropy loss, confusion matrix and per-class precision/recall/F1 (numpy only)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    k = contract.NUM_CLASSES
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-7, 1.0))))
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(contract.CLASS_NAMES)
    }
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "loss": loss,
        "n": int(len(y_true)),
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def classification_report_text(m: dict) -> str:
    """The familiar text table (as scikit-learn prints it)."""
    width = max(len(n) for n in contract.CLASS_NAMES) + 2
    lines = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    for name, r in m["per_class"].items():
        lines.append(f"{name:>{width}} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f} {r['support']:9d}")
    lines += ["", f"{'accuracy':>{width}} {'':>9} {'':>9} {m['accuracy']:9.4f} {m['n']:9d}",
              f"{'macro avg f1':>{width}} {'':>9} {'':>9} {m['macro_f1']:9.4f} {m['n']:9d}",
              f"{'loss':>{width}} {m['loss']:9.4f}"]
    return "\n".join(lines) + "\n"


def _plt():
    mpl = require("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write `fig` as a PNG atomically and free it."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)


def plot_confusion(cm: np.ndarray, path: Path) -> None:
    plt = _plt()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(10), contract.CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(10), contract.CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({cm.sum()} test images)")
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(10):
        for j in range(10):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if cm[i, j] > thresh else "black")
    save_figure(fig, path)


def plot_curves(history: dict, path: Path) -> None:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key, title in ((a1, "loss", "Loss"), (a2, "accuracy", "Accuracy")):
        if key in history:
            ax.plot(epochs, history[key], "b-o", ms=3, label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "r-o", ms=3, label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}: train vs validation")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_grid(images: np.ndarray, titles: list[str], path: Path, suptitle: str, cols: int = 5) -> None:
    plt = _plt()
    n = max(1, len(images))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.1, rows * 2.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(img, cmap="gray_r")
        ax.set_title(title, fontsize=8)
    fig.suptitle(suptitle)
    save_figure(fig, path)


def evaluate_and_report(model, x_test, y_test, out_dir, history: dict | None = None, samples=None) -> dict:
    """Evaluate `model` on the test images and write report/ (metrics.json, the text report and PNGs)."""
    out_dir = Path(out_dir)
    probs = predict_probs(model, x_test)
    m = classification_metrics(y_test, probs)
    write_json(out_dir / "metrics.json", m)
    write_text(out_dir / "classification_report.txt", classification_report_text(m))
    plot_confusion(np.asarray(m["confusion_matrix"]), out_dir / "confusion_matrix.png")
    if history:
        plot_curves(history, out_dir / "curves.png")
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_test)[:25]
    names = contract.CLASS_NAMES
    plot_grid(x_test[wrong], [f"true {names[y_test[i]]}\npred {names[pred[i]]}" for i in wrong],
              out_dir / "misclassified.png", f"Misclassified test images ({len(np.flatnonzero(pred != y_test))} of {len(y_test)})")
    if samples is not None:
        xs, ys = samples
        plot_grid(xs, [names[int(c)] for c in ys], out_dir / "samples.png", "Training images")
    return m


def evaluate_artifacts(folder, data_dir=None, test_limit: int | None = None, log=print) -> dict:
    """Re-create `folder`'s report from its saved Keras model and update the test metrics in its metadata."""
    from ..artifact import Layout, read_history, read_metadata, update_test_metrics
    from ..atomic import atomic_dir
    from .modelio import load_keras

    layout = Layout(folder)
    metadata = read_metadata(folder)
    model = load_keras(layout.keras)
    ds = data.load(data_dir)
    x_te, y_te = (ds.x_test, ds.y_test) if not test_limit else (ds.x_test[:test_limit], ds.y_test[:test_limit])
    history = read_history(folder, missing_ok=True)
    with atomic_dir(layout.report) as stage:
        m = evaluate_and_report(model, x_te, y_te, stage, history=history.metrics if history else None,
                                samples=(ds.x_train[:25], ds.y_train[:25]))
    update_test_metrics(folder, metadata, m)
    log(f"test accuracy {m['accuracy']:.4f} (loss {m['loss']:.4f}) on {m['n']} images; report in {layout.report}/")
    return m
