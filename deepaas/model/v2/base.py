"""The model contract: what deepaas calls on a model (same import path as DEEPaaS 2.x).

A model is any object registered in the ``deepaas.v2.model`` entry-point namespace
that has some of the methods below: a module with module-level functions, a class
(instantiated once, with no arguments; a class whose methods are all static is used
as it is, as 2.x did), or an instance. Subclassing :class:`BaseModel` is optional; it
documents the contract and gives every method a default, so a model only writes what
it offers. A method that is missing, or that raises ``NotImplementedError``, is
answered over HTTP with ``501 Not Implemented``.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["BaseModel"]


class BaseModel:
    """Base class for deepaas models; every method is optional.

    Attributes:
        schema: The response schema of ``predict``: a dict of marshmallow fields or a
            ``marshmallow.Schema`` subclass. JSON results are validated against it
            and it is published in the OpenAPI document. Without one, the result is
            wrapped as ``{"status": "OK", "predictions": <result>}`` as in 2.x.
    """

    schema: ClassVar[Any] = None

    def get_metadata(self) -> dict[str, Any]:
        """Describe the model.

        Returns:
            A dict shown at ``GET /v2/models/<name>/``. Usual keys are ``name``,
            ``description``, ``author``, ``license``, ``version`` and ``url``; any
            key given here overrides the default ``id`` and ``name``.
        """
        raise NotImplementedError

    def warm(self) -> None:
        """Load weights and prepare for the first call; run once at start-up."""

    def get_predict_args(self) -> dict[str, Any]:
        """Declare the arguments of :meth:`predict`.

        Returns:
            A dict of name to marshmallow field (or a ``Schema``). Conventions read
            by deepaas, in field metadata (``metadata={...}``, or as plain keywords
            in 2.x style): ``description``; ``type="file"`` for an upload (passed
            as :class:`~deepaas.model.v2.wrapper.UploadedFile`); and an argument
            named ``accept`` with ``validate.OneOf([...])`` listing the media types
            the model can answer with, the first being the default.
        """
        return {}

    def predict(self, **kwargs: Any) -> Any:
        """Run an inference.

        Args:
            **kwargs: The validated arguments declared by :meth:`get_predict_args`.

        Returns:
            A JSON-serialisable value; or, when a non-JSON ``accept`` was chosen,
            ``str``/``bytes``, an open binary file, a path, or a
            :class:`~deepaas.model.v2.wrapper.ReturnedFile`, sent back with that
            media type. May also be a coroutine function.
        """
        raise NotImplementedError

    def predict_batch(self, items: list[dict[str, Any]]) -> list[Any]:
        """Run many inferences in one call, when dynamic batching is enabled.

        Optional: without it (or with ``--max-batch-size 1``, the default) every
        request calls :meth:`predict`, which a model should keep in any case. See
        :doc:`/user/batching`.

        Args:
            items: The validated arguments of each waiting request, one dict per
                request, as :meth:`predict` would receive them as keywords.

        Returns:
            One result per item, in order, each what :meth:`predict` would return
            for it; or an exception instance, which fails that request only. May
            also be a coroutine function.
        """
        raise NotImplementedError

    def get_train_args(self) -> dict[str, Any]:
        """Declare the arguments of :meth:`train` (same conventions as predict)."""
        return {}

    def train(self, **kwargs: Any) -> Any:
        """Train or fine-tune the model; runs in its own process and may be cancelled.

        Returns:
            A JSON-serialisable summary, stored as the job's ``result``.
        """
        raise NotImplementedError
