"""Embedding the runtime in a kiosk app of your own: load once, classify frames, handle bad pictures.

    python examples/embed.py artifacts photo1.jpg photo2.png ...

Needs only the base install (`pip install fmnist-edge`: openvino, numpy, pillow), no TensorFlow.
"""

from __future__ import annotations

import sys

from fmnist_edge.runtime import Classifier, FmnistEdgeError, InputImageError


def main(model_dir: str, pictures: list[str]) -> list[tuple[str, object, str | None]]:
    # Once, at start-up: verifies the files against manifest.json and compiles for this CPU.
    # A missing or tampered model raises a FmnistEdgeError subclass with a one-line message.
    # (cache_dir="some/folder" would make the next start-up faster still.)
    clf = Classifier.load(model_dir, precision="fp32")

    results = []
    for picture in pictures:  # in a kiosk: each camera frame (a numpy array) or uploaded photo (bytes)
        try:
            p = clf.predict(picture, top_k=3)  # thread-safe: call it from any number of threads
        except InputImageError as exc:  # unreadable, truncated, blank, too large...: tell the customer
            print(f"{picture}: cannot use this picture: {exc}")
            results.append((picture, None, str(exc)))
            continue
        print(f"{picture}: {p.label} ({p.confidence:.0%}); then " + ", ".join(f"{n} {q:.0%}" for n, q in p.top_k[1:]))
        results.append((picture, p, None))
    return results


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python examples/embed.py ARTIFACT_DIR IMAGE [IMAGE...]")
    try:
        main(sys.argv[1], sys.argv[2:])
    except FmnistEdgeError as exc:  # the model could not be loaded: one line, non-zero exit
        sys.exit(f"error: {exc}")
