import deepaas
import deepaas.api
import deepaas.model
import deepaas.model.v2
from deepaas.model.v2 import base, wrapper


def test_exported_names_are_pinned():
    assert deepaas.__all__ == ["__version__", "extract_version"]
    assert sorted(deepaas.model.__all__) == [
        "BaseModel",
        "ModelWrapper",
        "ReturnedFile",
        "UploadedFile",
        "available_models",
        "load_models",
        "wrap",
    ]
    assert sorted(deepaas.api.__all__) == ["Plugin", "create_app", "load_plugins"]


def test_2x_import_paths():
    assert deepaas.model.v2.BaseModel is base.BaseModel
    assert wrapper.UploadedFile(filename="x").filename == "x"
    assert wrapper.UploadedFile()._fields == (
        "name",
        "filename",
        "content_type",
        "original_filename",
    )
    assert wrapper.ReturnedFile()._fields == (
        "name",
        "filename",
        "content_type",
        "original_filename",
    )
    assert deepaas.extract_version() == deepaas.__version__
