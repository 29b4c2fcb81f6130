"""Regenerate the demo model's bundled data: ``deepaas/demo/data/*.npz``.

Run once by a developer, never at install or run time. It needs scikit-learn (for
its bundled copy of the UCI optdigits data) and numpy, nothing else from deepaas;
keep scikit-learn out of the project's own environment::

    python -m venv /tmp/digits-venv
    /tmp/digits-venv/bin/pip install scikit-learn numpy
    /tmp/digits-venv/bin/python tools/build_demo_data.py

It writes:

* ``digits.npz``: the 1797 images (``uint8``, 8x8, 0..16) and labels of
  ``sklearn.datasets.load_digits`` -- UCI "Optical Recognition of Handwritten
  Digits" (E. Alpaydin, C. Kaynak, 1998), licensed CC BY 4.0;
* ``weights.npz``: the pre-trained weights, trained by the demo's own numpy code
  (:func:`deepaas.demo._net.train`) with its default arguments, so the shipped
  weights come from the same code path as ``POST .../train``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Importing from the source tree, not an installed deepaas: this venv only has
# scikit-learn and numpy, and deepaas.demo._net needs nothing more.
sys.path.insert(0, str(ROOT))

from deepaas.demo import _net  # noqa: E402


def export_digits(target: Path) -> None:
    """Write the optdigits images and labels from scikit-learn to ``target``."""
    # scikit-learn is untyped, and absent from the project environment.
    from sklearn.datasets import load_digits  # type: ignore

    digits = load_digits()
    images = np.asarray(digits.images).round().astype(np.uint8)
    labels = np.asarray(digits.target).astype(np.uint8)
    if images.shape != (1797, 8, 8) or int(images.max()) != 16:
        raise SystemExit(f"unexpected digits data: {images.shape}, max {images.max()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, images=images, labels=labels)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


def train_weights(data_file: Path, target: Path) -> None:
    """Train the default network on ``data_file`` and write it to ``target``."""
    result = _net.train(_net.load_dataset(data_file))
    result.network.save(target)
    print(
        f"wrote {target} ({target.stat().st_size} bytes): "
        f"train accuracy {result.train_accuracy:.4f}, "
        f"test accuracy {result.test_accuracy:.4f}"
    )


def main() -> None:
    """Export the data (unless ``--weights-only``) and train the shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights-only",
        action="store_true",
        help="keep digits.npz and only retrain weights.npz (no scikit-learn needed)",
    )
    args = parser.parse_args()
    if not args.weights_only:
        export_digits(_net.DATA_FILE)
    train_weights(_net.DATA_FILE, _net.BUNDLED_WEIGHTS)


if __name__ == "__main__":
    main()
