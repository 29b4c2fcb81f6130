"""The model layer: the contract, discovery and the wrapper used by the server."""

from deepaas.model.loading import available_models, load_models, wrap
from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import ModelWrapper, ReturnedFile, UploadedFile

__all__ = [
    "BaseModel",
    "ModelWrapper",
    "ReturnedFile",
    "UploadedFile",
    "available_models",
    "load_models",
    "wrap",
]
