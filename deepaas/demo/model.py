"""The demo model as deepaas sees it: :class:`DigitsModel`."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from marshmallow import Schema, fields, validate

from deepaas.demo import _image, _net
from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import UploadedFile

__all__ = ["DigitsModel", "PredictionSchema"]

_LOG = logging.getLogger(__name__)

JSON = "application/json"
PNG = "image/png"
TEXT = "text/plain"
VERSION = "1.0.0"


class CandidateSchema(Schema):
    """One class and its probability."""

    label = fields.Int(
        required=True,
        validate=validate.Range(0, 9),
        metadata={"description": "A digit."},
    )
    probability = fields.Float(
        required=True,
        validate=validate.Range(0.0, 1.0),
        metadata={"description": "Probability of that digit."},
    )


class PredictionSchema(Schema):
    """The JSON answer of :meth:`DigitsModel.predict`."""

    label = fields.Int(
        required=True,
        validate=validate.Range(0, 9),
        metadata={"description": "The most probable digit."},
    )
    probability = fields.Float(
        required=True,
        validate=validate.Range(0.0, 1.0),
        metadata={"description": "Its probability."},
    )
    top_k = fields.List(
        fields.Nested(CandidateSchema),
        required=True,
        metadata={"description": "The most probable digits, most probable first."},
    )


class _Loaded(NamedTuple):
    network: _net.Network
    path: Path
    # Identifies the file version: training replaces the file (new inode) and may do
    # so twice within the file system's timestamp resolution.
    stamp: tuple[int, int, int]


class DigitsModel(BaseModel):
    """Recognise a handwritten digit in a picture; retrainable in seconds.

    Predictions use the newest weights: those written by the last training (in the
    state directory, see :func:`deepaas.demo._net.state_dir`) if any, else the
    weights shipped with deepaas. A training run in another process is picked up
    by the next prediction.
    """

    schema = PredictionSchema

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None
        self._rejected: tuple[Path, tuple[int, int, int]] | None = None
        self._lock = threading.Lock()

    # Weights ------------------------------------------------------------------

    def _network(self) -> _Loaded:
        """The current network, re-read when the newest weights file changed."""
        trained = _net.state_dir() / _net.WEIGHTS_NAME
        for path in (trained, _net.BUNDLED_WEIGHTS):
            try:
                info = path.stat()
            except OSError:
                continue
            stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
            with self._lock:
                loaded = self._loaded
                if loaded is not None and loaded.path == path and loaded.stamp == stamp:
                    return loaded
                if (path, stamp) == self._rejected:
                    continue
                try:
                    network = _net.Network.load(path)
                except (OSError, ValueError) as exc:
                    if path == _net.BUNDLED_WEIGHTS:
                        raise
                    # A broken trained file must not take the demo down: the
                    # bundled weights still work. Remembered, to warn only once.
                    _LOG.warning("Ignoring trained weights: %s", exc)
                    self._rejected = (path, stamp)
                    continue
                _LOG.info("Loaded weights from %s", path)
                self._loaded = _Loaded(network, path, stamp)
                return self._loaded
        raise FileNotFoundError(f"no weights found at {_net.BUNDLED_WEIGHTS}")

    def warm(self) -> None:
        """Load the newest weights, so the first prediction does not wait for them."""
        self._network()

    # Contract -----------------------------------------------------------------

    def get_metadata(self) -> dict[str, Any]:
        """Describe the model and the weights it currently uses."""
        loaded = self._network()
        return {
            "name": "demo",
            "description": (
                "Handwritten digit recognition (0-9) on 8x8 images, with softmax "
                "regression or a small neural network written in numpy. Send a "
                "picture of one digit to predict; train to retrain it in seconds."
            ),
            "author": "deepaas developers",
            "license": "Apache-2.0",
            "version": VERSION,
            "url": "https://deepaas.readthedocs.io/",
            "data": (
                "UCI Optical Recognition of Handwritten Digits (E. Alpaydin, "
                "C. Kaynak), CC BY 4.0"
            ),
            "weights": {
                "source": "bundled"
                if loaded.path == _net.BUNDLED_WEIGHTS
                else "trained",
                "hidden": loaded.network.hidden,
                "test_accuracy": loaded.network.meta.get("test_accuracy"),
            },
        }

    def get_predict_args(self) -> dict[str, Any]:
        """Declare the picture to classify and the form of the answer."""
        return {
            "image": fields.Field(
                required=True,
                metadata={
                    "type": "file",
                    "location": "form",
                    "description": (
                        "Picture of one handwritten digit (PNG, JPEG...), any size, "
                        "dark on light or light on dark."
                    ),
                },
            ),
            "top_k": fields.Int(
                load_default=3,
                validate=validate.Range(1, 10),
                metadata={
                    "description": "How many of the most probable digits to list."
                },
            ),
            "accept": fields.Str(
                load_default=JSON,
                validate=validate.OneOf([JSON, PNG, TEXT]),
                metadata={
                    "description": (
                        "Media type of the answer: JSON, a PNG chart of the class "
                        "probabilities, or one line of text."
                    )
                },
            ),
        }

    def predict(self, **kwargs: Any) -> Any:
        """Classify the digit in ``image``.

        Args:
            **kwargs: ``image`` (an :class:`~deepaas.model.v2.wrapper.UploadedFile`
                or a path), ``top_k`` and ``accept`` as declared by
                :meth:`get_predict_args`.

        Returns:
            For ``application/json``, a dict matching :class:`PredictionSchema`;
            for ``text/plain``, a line such as ``"7 (0.98)"``; for ``image/png``,
            the PNG picture as bytes.

        Raises:
            ValueError: The image is missing or unreadable, or shows no digit.
        """
        path, name = _source(kwargs.get("image"))
        top_k = int(kwargs.get("top_k", 3))
        accept = str(kwargs.get("accept", JSON))
        if not 1 <= top_k <= _net.N_CLASSES:
            raise ValueError(
                f"top_k must be between 1 and {_net.N_CLASSES}, not {top_k}"
            )
        pixels = _image.load_digit(path, name=name)
        probabilities = self._network().network.probabilities(_net.features(pixels))[0]
        # A stable sort keeps ties in digit order, so answers are reproducible.
        order = np.argsort(-probabilities, kind="stable")
        best = int(order[0])
        if accept == PNG:
            return _image.render(pixels, probabilities)
        if accept == TEXT:
            return f"{best} ({probabilities[best]:.2f})"
        return {
            "label": best,
            "probability": float(probabilities[best]),
            "top_k": [
                {"label": int(label), "probability": float(probabilities[label])}
                for label in order[:top_k]
            ],
        }

    def get_train_args(self) -> dict[str, Any]:
        """Declare the training hyper-parameters."""
        return {
            "epochs": fields.Int(
                load_default=30,
                validate=validate.Range(1, 500),
                metadata={"description": "Passes over the training images."},
            ),
            "learning_rate": fields.Float(
                load_default=0.5,
                validate=validate.Range(min=0.0, min_inclusive=False),
                metadata={"description": "Initial gradient-descent step size."},
            ),
            "hidden": fields.Int(
                load_default=0,
                validate=validate.Range(0, 256),
                metadata={
                    "description": (
                        "Size of the hidden layer; 0 trains softmax regression."
                    )
                },
            ),
            "seed": fields.Int(
                load_default=0,
                metadata={
                    "description": "Seed of the initial weights and batch order."
                },
            ),
        }

    def train(self, **kwargs: Any) -> dict[str, Any]:
        """Retrain from scratch on the bundled data and save the new weights.

        Progress is printed, one line per epoch. The weights go to the state
        directory (``$DEEPAAS_DEMO_STATE_DIR``, else ``~/.cache/deepaas-demo``),
        never into the installed package.

        Args:
            **kwargs: ``epochs``, ``learning_rate``, ``hidden`` and ``seed``, as
                declared by :meth:`get_train_args`.

        Returns:
            ``train_accuracy``, ``test_accuracy`` (on the fixed held-out fifth),
            final training ``loss``, ``epochs``, ``hidden``, ``seconds`` and
            ``weights_path``.
        """
        epochs = int(kwargs.get("epochs", 30))
        started = time.perf_counter()

        def report(epoch: int, loss: float, train_acc: float, test_acc: float) -> None:
            print(
                f"epoch {epoch}/{epochs}: loss {loss:.4f}, "
                f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}",
                flush=True,
            )

        result = _net.train(
            _net.load_dataset(),
            epochs=epochs,
            learning_rate=float(kwargs.get("learning_rate", 0.5)),
            hidden=int(kwargs.get("hidden", 0)),
            seed=int(kwargs.get("seed", 0)),
            progress=report,
        )
        path = result.network.save(_net.state_dir() / _net.WEIGHTS_NAME)
        return {
            "train_accuracy": result.train_accuracy,
            "test_accuracy": result.test_accuracy,
            "loss": result.loss,
            "epochs": result.epochs,
            "hidden": result.network.hidden,
            "seconds": round(time.perf_counter() - started, 3),
            "weights_path": str(path),
        }


def _source(image: Any) -> tuple[str | os.PathLike[str], str | None]:
    """The path of an uploaded (or named) image, and its name for messages."""
    if isinstance(image, UploadedFile):
        if not image.filename:
            raise ValueError("'image' was uploaded without content")
        return image.filename, image.original_filename or image.name
    if isinstance(image, (str, os.PathLike)):
        return image, None
    raise ValueError("'image' is required: upload a picture of a digit")
