"""The 2.x import paths of the model contract."""

from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import ModelWrapper, ReturnedFile, UploadedFile

__all__ = ["BaseModel", "ModelWrapper", "ReturnedFile", "UploadedFile"]
