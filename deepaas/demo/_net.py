"""The demo's classifier in plain numpy: data, training, evaluation and storage.

The network is softmax regression (``hidden=0``) or a one-hidden-layer ``tanh``
perceptron, trained by mini-batch gradient descent on cross-entropy. Weights are
stored as ``.npz`` files read with ``allow_pickle=False``, so a weights file can
never run code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BUNDLED_WEIGHTS",
    "DATA_FILE",
    "STATE_DIR_ENV",
    "Dataset",
    "Network",
    "TrainResult",
    "features",
    "load_dataset",
    "split",
    "state_dir",
    "train",
]

FloatArray = NDArray[np.float64]

N_CLASSES = 10
N_PIXELS = 64
MAX_PIXEL = 16.0
# Every fifth sample is held out: a fixed rule, not an RNG, so the test split is the
# same for every numpy version, training seed and process.
TEST_EVERY = 5

DATA_DIR = Path(__file__).resolve().parent / "data"
DATA_FILE = DATA_DIR / "digits.npz"
BUNDLED_WEIGHTS = DATA_DIR / "weights.npz"
STATE_DIR_ENV = "DEEPAAS_DEMO_STATE_DIR"
WEIGHTS_NAME = "weights.npz"

ProgressCallback = Callable[[int, float, float, float], None]


@dataclass(frozen=True)
class Dataset:
    """Images of digits and their labels.

    Attributes:
        images: ``(n, 8, 8)`` pixel counts from 0 to 16, as in UCI optdigits.
        labels: ``(n,)`` digits from 0 to 9.
    """

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_dataset(path: str | os.PathLike[str] = DATA_FILE) -> Dataset:
    """Read the bundled optdigits data (or a file in the same format).

    Args:
        path: An ``.npz`` file with ``images`` (``n x 8 x 8``, 0..16) and ``labels``.

    Returns:
        The whole data set, in file order.
    """
    with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as data:
        images = np.asarray(data["images"], dtype=np.uint8)
        labels = np.asarray(data["labels"], dtype=np.int64)
    if images.shape[1:] != (8, 8) or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: expected n x 8 x 8 images and n labels")
    return Dataset(images, labels)


def split(data: Dataset) -> tuple[Dataset, Dataset]:
    """Split ``data`` into the fixed training and held-out test parts.

    Returns:
        ``(train, test)``; the test part is every fifth sample (20 %).
    """
    held_out = np.arange(len(data)) % TEST_EVERY == TEST_EVERY - 1
    return (
        Dataset(data.images[~held_out], data.labels[~held_out]),
        Dataset(data.images[held_out], data.labels[held_out]),
    )


def features(images: NDArray[Any]) -> FloatArray:
    """Flatten ``(n, 8, 8)`` pixel counts (0..16) to ``(n, 64)`` inputs in 0..1."""
    array = np.asarray(images, dtype=np.float64)
    return array.reshape(-1, N_PIXELS) / MAX_PIXEL


def state_dir() -> Path:
    """The writable directory for trained weights.

    Returns:
        ``$DEEPAAS_DEMO_STATE_DIR`` when set, else ``~/.cache/deepaas-demo``.
    """
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "deepaas-demo"


def _softmax(logits: FloatArray) -> FloatArray:
    # Shifting by the row maximum keeps exp() from overflowing.
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class Network:
    """A trained classifier: a list of ``(weights, bias)`` layers and a description.

    Args:
        layers: One layer (softmax regression) or two (hidden ``tanh`` layer, then
            softmax), as ``(weights, bias)`` pairs.
        meta: JSON-serialisable facts about the training (stored with the weights).

    Raises:
        ValueError: The layer shapes do not chain from 64 inputs to 10 classes.
    """

    def __init__(
        self,
        layers: list[tuple[FloatArray, FloatArray]],
        meta: dict[str, Any] | None = None,
    ) -> None:
        if len(layers) not in (1, 2):
            raise ValueError(f"expected 1 or 2 layers, got {len(layers)}")
        width = N_PIXELS
        for weights, bias in layers:
            if (
                weights.ndim != 2
                or weights.shape[0] != width
                or bias.shape != weights.shape[1:]
            ):
                raise ValueError(
                    f"layer shapes {weights.shape} and {bias.shape} do not chain"
                )
            width = weights.shape[1]
        if width != N_CLASSES:
            raise ValueError(f"the last layer has {width} outputs, not {N_CLASSES}")
        self.layers = layers
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def hidden(self) -> int:
        """Size of the hidden layer; 0 for softmax regression."""
        return 0 if len(self.layers) == 1 else int(self.layers[0][0].shape[1])

    @classmethod
    def initial(cls, hidden: int, rng: np.random.Generator) -> Network:
        """A network before training.

        Args:
            hidden: Hidden layer size, or 0 for softmax regression.
            rng: Source of the random initial weights of a hidden layer.
        """
        if hidden == 0:
            # Softmax regression is convex, so zeros are as good a start as any.
            return cls([(np.zeros((N_PIXELS, N_CLASSES)), np.zeros(N_CLASSES))])
        # Scaled by fan-in so tanh starts in its linear range rather than saturated.
        first = rng.normal(0.0, 1.0 / np.sqrt(N_PIXELS), (N_PIXELS, hidden))
        second = rng.normal(0.0, 1.0 / np.sqrt(hidden), (hidden, N_CLASSES))
        return cls([(first, np.zeros(hidden)), (second, np.zeros(N_CLASSES))])

    def _forward(self, inputs: FloatArray) -> tuple[FloatArray | None, FloatArray]:
        hidden_out = None
        current = inputs
        if len(self.layers) == 2:
            weights, bias = self.layers[0]
            hidden_out = np.tanh(current @ weights + bias)
            current = hidden_out
        weights, bias = self.layers[-1]
        return hidden_out, _softmax(current @ weights + bias)

    def probabilities(self, inputs: FloatArray) -> FloatArray:
        """Class probabilities, ``(n, 10)``, for ``(n, 64)`` inputs in 0..1."""
        return self._forward(
            np.asarray(inputs, dtype=np.float64).reshape(-1, N_PIXELS)
        )[1]

    def accuracy(self, data: Dataset) -> float:
        """Fraction of ``data`` classified correctly."""
        predicted = self.probabilities(features(data.images)).argmax(axis=1)
        return float(np.mean(predicted == data.labels))

    def loss(self, data: Dataset) -> float:
        """Mean cross-entropy of the network on ``data``."""
        probs = self.probabilities(features(data.images))
        picked = probs[np.arange(len(data)), data.labels]
        return float(-np.mean(np.log(np.maximum(picked, 1e-12))))

    def step(
        self, inputs: FloatArray, labels: NDArray[np.int64], rate: float, decay: float
    ) -> None:
        """One gradient-descent step on a mini-batch (updates the weights in place)."""
        hidden_out, probs = self._forward(inputs)
        grad = probs
        grad[np.arange(labels.shape[0]), labels] -= 1.0
        grad /= labels.shape[0]
        below = inputs if hidden_out is None else hidden_out
        weights, bias = self.layers[-1]
        back = grad @ weights.T if hidden_out is not None else None
        weights -= rate * (below.T @ grad + decay * weights)
        bias -= rate * grad.sum(axis=0)
        if hidden_out is not None and back is not None:
            back *= 1.0 - hidden_out**2
            weights, bias = self.layers[0]
            weights -= rate * (inputs.T @ back + decay * weights)
            bias -= rate * back.sum(axis=0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights and ``meta`` to ``path`` atomically.

        Another process may be reading the file (the server reloads it when it
        changes), so the new file is written beside it and renamed over it.

        Returns:
            The path written.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, NDArray[Any]] = {"meta": np.array(json.dumps(self.meta))}
        for index, (weights, bias) in enumerate(self.layers):
            arrays[f"w{index}"] = weights
            arrays[f"b{index}"] = bias
        handle, temporary = tempfile.mkstemp(
            prefix=".weights-", suffix=".npz", dir=target.parent
        )
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez_compressed(stream, **arrays)  # type: ignore[arg-type]
            # mkstemp makes the file private; weights are not secret, and the
            # server may run as another user than the trainer.
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Network:
        """Read a network written by :meth:`save`.

        Raises:
            ValueError: The file is not a weights file of this demo.
            OSError: The file cannot be read.
        """
        try:
            # Opened here, not by np.load, which leaks its handle on a broken zip.
            with open(path, "rb") as stream:
                data = np.load(stream, allow_pickle=False)
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise ValueError("not an .npz archive")
                with data:
                    meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
                    layers: list[tuple[FloatArray, FloatArray]] = []
                    while f"w{len(layers)}" in data.files:
                        index = len(layers)
                        layers.append(
                            (
                                np.asarray(data[f"w{index}"], dtype=np.float64),
                                np.asarray(data[f"b{index}"], dtype=np.float64),
                            )
                        )
            if not isinstance(meta, dict):
                raise ValueError("its meta is not a JSON object")
            return cls(layers, meta)
        # A damaged archive surfaces as any of these, depending on where it is cut.
        except (KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"{path} is not a demo weights file: {exc}") from exc


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        network: The trained network (its ``meta`` holds the metrics below).
        train_accuracy: Accuracy on the training split.
        test_accuracy: Accuracy on the held-out split.
        loss: Final mean cross-entropy on the training split.
        epochs: Number of passes over the training split.
    """

    network: Network
    train_accuracy: float
    test_accuracy: float
    loss: float
    epochs: int


def _augmented(data: Dataset) -> tuple[FloatArray, NDArray[np.int64]]:
    """Training inputs and labels, plus copies shifted by half a block sideways.

    Pictures sent for prediction are not aligned on optdigits' grid, so digits
    often land half a block off; seen in training, such shifts cost less accuracy
    (held-out digits rendered as pictures: 93 % right without, 94 % with).
    """
    images = np.asarray(data.images, dtype=np.float64)
    left = np.zeros_like(images)
    left[:, :, :-1] = images[:, :, 1:]
    right = np.zeros_like(images)
    right[:, :, 1:] = images[:, :, :-1]
    stacked = np.concatenate([images, (images + left) / 2, (images + right) / 2])
    return features(stacked), np.tile(data.labels, 3)


def train(
    data: Dataset,
    *,
    epochs: int = 30,
    learning_rate: float = 0.5,
    hidden: int = 0,
    seed: int = 0,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train a network from scratch on the training split of ``data``.

    The training images are used as they are and shifted by half a block to
    either side (see :func:`_augmented`).

    Args:
        data: The whole data set; its fixed test split is held out.
        epochs: Passes over the training split.
        learning_rate: Initial step size; it decays linearly to a tenth of that.
        hidden: Hidden layer size, or 0 for softmax regression.
        seed: Seeds the initial weights and the order of the mini-batches.
        batch_size: Samples per gradient step.
        weight_decay: L2 penalty; keeps the weights, hence the confidences, moderate.
        progress: Called after every epoch with ``(epoch, loss, train_accuracy,
            test_accuracy)``.

    Returns:
        The trained network and its metrics.
    """
    if epochs < 1 or learning_rate <= 0 or hidden < 0 or batch_size < 1:
        raise ValueError(
            "epochs and batch_size must be >= 1, learning_rate > 0, hidden >= 0"
        )
    rng = np.random.default_rng(seed)
    train_part, test_part = split(data)
    inputs, labels = _augmented(train_part)
    network = Network.initial(hidden, rng)
    loss = train_accuracy = test_accuracy = 0.0
    for epoch in range(1, epochs + 1):
        # Decaying the step lets the last epochs settle instead of bouncing around.
        rate = learning_rate * (1.0 - 0.9 * (epoch - 1) / max(epochs - 1, 1))
        order = rng.permutation(labels.shape[0])
        # A too-large learning rate overflows; that is reported below as divergence
        # rather than as a stream of numpy warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                network.step(inputs[batch], labels[batch], rate, weight_decay)
            loss = network.loss(train_part)
        if not np.isfinite(loss):
            raise ValueError(
                f"training diverged at epoch {epoch} (loss {loss}); "
                "try a smaller learning_rate"
            )
        train_accuracy = network.accuracy(train_part)
        test_accuracy = network.accuracy(test_part)
        if progress is not None:
            progress(epoch, loss, train_accuracy, test_accuracy)
    network.meta = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "hidden": hidden,
        "seed": seed,
        "loss": loss,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
    }
    return TrainResult(network, train_accuracy, test_accuracy, loss, epochs)
