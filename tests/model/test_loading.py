import inspect
import types
import warnings

import deepaas_fixture_legacy
import deepaas_fixture_modern
import pytest
from marshmallow import Schema, fields

from deepaas.exceptions import ModelLoadError, ModelNotFound
from deepaas.model import ModelWrapper, _compat, available_models, load_models
from deepaas.model.loading import instantiate, resolve, wrap

# --- Discovery ------------------------------------------------------------------------


def test_available_models_lists_the_installed_fixtures():
    names = available_models()
    assert {"legacy", "modern", "static"} <= set(names)
    assert names == sorted(set(names))


def test_available_models_imports_nothing(broken_installed):
    # Listing must not import: the broken module would raise if it were imported.
    names = available_models()
    assert {"broken", "needsargs"} <= set(names)


def test_broken_models_are_gone_after_the_throwaway_environment():
    # Guards the fixture itself: nothing leaks into the shared environment.
    assert "broken" not in available_models()
    assert "needsargs" not in available_models()


# --- Loading by name --------------------------------------------------------------


def test_load_one_model_by_name():
    models = load_models(["legacy"])
    assert list(models) == ["legacy"]
    model = models["legacy"]
    assert isinstance(model, ModelWrapper)
    assert model.name == "legacy"
    assert model.model is deepaas_fixture_legacy
    assert model.target == "deepaas_fixture_legacy"
    assert model.metadata()["name"] == "legacy-model"


def test_load_several_models_in_the_order_given():
    models = load_models(["static", "legacy", "modern"])
    assert list(models) == ["static", "legacy", "modern"]
    assert {m.name for m in models.values()} == {"static", "legacy", "modern"}


def test_unknown_name_raises_model_not_found_naming_it():
    with pytest.raises(ModelNotFound) as info:
        load_models(["legacy", "no-such-model"])
    assert info.value.name == "no-such-model"
    assert "no-such-model" in info.value.message


def test_broken_import_is_an_error_naming_entry_point_and_cause(broken_installed):
    with pytest.raises(ModelLoadError) as info:
        load_models(["broken"])
    message = info.value.message
    assert "'broken'" in message
    assert "tensorflow_for_tests" in message
    assert "deepaas_fixture_broken" in message
    # The original exception is kept as the cause, not swallowed.
    assert isinstance(info.value.__cause__, ImportError)


def test_broken_model_is_never_skipped_among_good_ones(broken_installed):
    # No fallback: one failing model fails the whole load, whatever the order.
    for names in (["legacy", "broken"], ["broken", "legacy"]):
        with pytest.raises(ModelLoadError, match="tensorflow_for_tests"):
            load_models(names)


def test_serving_every_installed_model_fails_when_one_is_broken(broken_installed):
    with pytest.raises(ModelLoadError, match="broken"):
        load_models()


def test_class_needing_arguments_is_an_error_naming_the_class(broken_installed):
    with pytest.raises(ModelLoadError) as info:
        load_models(["needsargs"])
    message = info.value.message
    assert "NeedsArgsModel" in message
    assert "weights_path" in message  # the TypeError saying what is missing
    assert any(isinstance(exc, TypeError) for exc in _causes(info.value))


def test_class_needing_arguments_error_names_the_entry_point(broken_installed):
    with pytest.raises(ModelLoadError) as info:
        load_models(["needsargs"])
    assert "'needsargs'" in info.value.message


def _causes(exc):
    while exc is not None:
        yield exc
        exc = exc.__cause__


# --- Classes, instances, static classes ----------------------------------------------


def test_class_with_instance_methods_is_instantiated():
    model = load_models(["modern"])["modern"]
    assert isinstance(model.model, deepaas_fixture_modern.ModernModel)
    assert model.target == "deepaas_fixture_modern:ModernModel"
    assert model.call("predict", text="hi")["label"] == "modern:hi"


def test_class_with_only_static_methods_is_used_as_is():
    model = load_models(["static"])["static"]
    assert model.model is deepaas_fixture_modern.StaticModel
    assert inspect.isclass(model.model)
    assert model.call("predict", x=2, y=5) == {"sum": 7}
    assert model.metadata()["name"] == "static-model"


def test_instantiate_returns_an_instance_unchanged():
    instance = deepaas_fixture_modern.ModernModel()
    assert instantiate(instance) is instance


def test_instantiate_returns_a_module_unchanged():
    assert instantiate(deepaas_fixture_legacy) is deepaas_fixture_legacy


def test_instantiate_creates_an_instance_of_a_class():
    made = instantiate(deepaas_fixture_modern.ModernModel)
    assert type(made) is deepaas_fixture_modern.ModernModel


def test_instantiate_uses_a_static_class_as_is():
    cls = deepaas_fixture_modern.StaticModel
    assert instantiate(cls) is cls


def test_instantiate_failure_names_the_class():
    class NeedsArgs:
        def __init__(self, path):
            self.path = path

        def predict(self, **kwargs):
            return {}

    with pytest.raises(ModelLoadError, match="NeedsArgs"):
        instantiate(NeedsArgs)


def test_wrap_an_instance_under_a_name():
    wrapped = wrap("mine", deepaas_fixture_modern.ModernModel())
    assert wrapped.name == "mine"
    assert wrapped.target == "deepaas_fixture_modern:ModernModel"


def test_wrap_a_namespace_keeps_its_methods():
    obj = types.SimpleNamespace(predict=lambda **kw: {"ok": True})
    wrapped = wrap("ns", obj)
    assert wrapped.call("predict") == {"ok": True}


# --- resolve ----------------------------------------------------------------------


def test_resolve_module_and_attribute():
    assert resolve("deepaas_fixture_modern:ModernModel") is (
        deepaas_fixture_modern.ModernModel
    )


def test_resolve_dotted_attribute_path():
    assert resolve("deepaas_fixture_modern:ModernModel.get_metadata") is (
        deepaas_fixture_modern.ModernModel.get_metadata
    )


def test_resolve_module_only():
    assert resolve("deepaas_fixture_legacy") is deepaas_fixture_legacy


def test_resolve_unknown_attribute_raises():
    with pytest.raises(AttributeError):
        resolve("deepaas_fixture_modern:NoSuchThing")


# --- marshmallow compatibility shim --------------------------------------------------


def test_compat_shim_accepts_marshmallow3_keywords():
    _compat.install()
    _compat.install()  # idempotent
    field = fields.Str(missing="x", description="d")
    schema = Schema.from_dict({"a": field})()
    assert schema.load({}) == {"a": "x"}
    assert schema.load({"a": "y"}) == {"a": "y"}
    assert field.metadata["description"] == "d"
    assert field.load_default == "x"


def test_compat_shim_translates_default_and_reads_old_attributes():
    _compat.install()
    field = fields.Int(missing=1, default=2, location="query")
    assert field.load_default == 1
    assert field.dump_default == 2
    assert field.metadata["location"] == "query"
    with warnings.catch_warnings():
        # marshmallow 3 deprecates reading them; marshmallow 4 gets them from us.
        warnings.simplefilter("ignore")
        assert (field.missing, field.default) == (1, 2)


def test_compat_shim_keeps_new_keywords_first():
    _compat.install()
    field = fields.Str(load_default="new", missing="old", metadata={"a": 1}, b=2)
    assert field.load_default == "new"
    assert field.metadata == {"a": 1, "b": 2}
