import io
import os
import re

import numpy as np
import pytest
from marshmallow import ValidationError
from PIL import Image

from deepaas.demo import _image, _net
from deepaas.demo.model import DigitsModel, PredictionSchema
from deepaas.model.v2.wrapper import ModelWrapper, UploadedFile

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    # Never read or write the developer's ~/.cache: every test gets its own state.
    path = tmp_path / "state"
    monkeypatch.setenv(_net.STATE_DIR_ENV, str(path))
    return path


@pytest.fixture(scope="module")
def test_split():
    return _net.split(_net.load_dataset())[1]


def render_digit(pixels, path, *, light_on_dark=False):
    """Draw an 8x8 optdigits sample as a 64x64 picture with a border."""
    ink = np.asarray(pixels, dtype=np.float64) * (255 / 16)
    shade = ink if light_on_dark else 255 - ink
    digit = Image.fromarray(shade.astype(np.uint8)).resize(
        (48, 48), Image.Resampling.NEAREST
    )
    canvas = Image.new("L", (64, 64), 0 if light_on_dark else 255)
    canvas.paste(digit, (8, 8))
    canvas.save(path)
    return UploadedFile(
        name="image",
        filename=str(path),
        content_type="image/png",
        original_filename="d.png",
    )


def upload(path, content_type="image/png"):
    return UploadedFile(
        name="image",
        filename=str(path),
        content_type=content_type,
        original_filename=os.path.basename(path),
    )


def first_of(split, label):
    return split.images[int(np.flatnonzero(split.labels == label)[0])]


def test_dataset_is_the_optdigits_copy(test_split):
    data = _net.load_dataset()
    assert data.images.shape == (1797, 8, 8)
    assert data.images.dtype == np.uint8
    assert int(data.images.max()) == 16
    assert np.bincount(data.labels).tolist() == [
        178,
        182,
        177,
        183,
        181,
        182,
        181,
        179,
        174,
        180,
    ]
    assert len(test_split) == 359


def test_bundled_weights_reach_90_percent_on_held_out_split(test_split):
    network = _net.Network.load(_net.BUNDLED_WEIGHTS)
    accuracy = network.accuracy(test_split)
    assert accuracy >= 0.9
    assert network.meta["test_accuracy"] == pytest.approx(accuracy)
    assert network.hidden == 0


def test_pictures_of_held_out_digits_are_recognised(tmp_path, test_split):
    network = _net.Network.load(_net.BUNDLED_WEIGHTS)
    pixels = []
    for index, image in enumerate(test_split.images):
        render_digit(image, tmp_path / f"{index}.png", light_on_dark=index % 2 == 1)
        pixels.append(_image.load_digit(tmp_path / f"{index}.png"))
    predicted = network.probabilities(_net.features(np.stack(pixels))).argmax(axis=1)
    assert np.mean(predicted == test_split.labels) >= 0.9


@pytest.mark.parametrize("light_on_dark", [False, True])
def test_predict_png_returns_right_label(tmp_path, test_split, light_on_dark):
    model = DigitsModel()
    model.warm()
    image = render_digit(
        first_of(test_split, 7), tmp_path / "seven.png", light_on_dark=light_on_dark
    )
    result = model.predict(image=image, top_k=3, accept="application/json")
    assert result["label"] == 7
    assert result["probability"] > 0.5
    assert result["top_k"][0] == {"label": 7, "probability": result["probability"]}
    assert PredictionSchema().load(result) == result


def test_predict_reads_jpeg_and_transparent_canvas(tmp_path, test_split):
    model = DigitsModel()
    ink = Image.fromarray(
        (first_of(test_split, 0).astype(np.float64) * 255 / 16).astype(np.uint8)
    )
    big = ink.resize((200, 200), Image.Resampling.BILINEAR)
    photo = Image.new("RGB", (300, 260), (250, 245, 235))
    photo.paste((30, 30, 40), (50, 30), big)
    photo.save(tmp_path / "zero.jpg", quality=85)
    canvas = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    canvas.paste((0, 0, 0, 255), (28, 28), big)
    canvas.save(tmp_path / "zero.png")
    for path in (tmp_path / "zero.jpg", tmp_path / "zero.png"):
        assert model.predict(image=upload(path), top_k=1)["label"] == 0


def test_top_k_lists_most_probable_first(tmp_path, test_split):
    model = DigitsModel()
    image = render_digit(first_of(test_split, 3), tmp_path / "three.png")
    result = model.predict(image=image, top_k=5, accept="application/json")
    assert len(result["top_k"]) == 5
    labels = [entry["label"] for entry in result["top_k"]]
    probabilities = [entry["probability"] for entry in result["top_k"]]
    assert labels[0] == result["label"] == 3
    assert len(set(labels)) == 5
    assert probabilities == sorted(probabilities, reverse=True)
    full = model.predict(image=image, top_k=10)
    assert sum(entry["probability"] for entry in full["top_k"]) == pytest.approx(1.0)
    assert model.predict(image=image)["top_k"] == result["top_k"][:3]


def test_predict_text_plain(tmp_path, test_split):
    model = DigitsModel()
    image = render_digit(first_of(test_split, 7), tmp_path / "seven.png")
    text = model.predict(image=image, top_k=3, accept="text/plain")
    json_result = model.predict(image=image, top_k=3, accept="application/json")
    assert re.fullmatch(r"7 \(\d\.\d\d\)", text)
    assert text == f"7 ({json_result['probability']:.2f})"


def test_predict_image_png_is_a_chart(tmp_path, test_split):
    model = DigitsModel()
    image = render_digit(first_of(test_split, 2), tmp_path / "two.png")
    body = model.predict(image=image, top_k=3, accept="image/png")
    assert isinstance(body, bytes)
    assert body.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(body)) as chart:
        assert chart.format == "PNG"
        assert chart.width > chart.height >= 128
        chart.load()


def test_predict_rejects_a_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a picture\n")
    with pytest.raises(
        ValueError, match=r"'notes\.txt' is not an image that can be read"
    ):
        DigitsModel().predict(image=upload(path, "text/plain"), top_k=3)


def test_predict_rejects_a_truncated_image(tmp_path):
    path = tmp_path / "cut.png"
    Image.new("L", (64, 64), 255).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(
        ValueError, match=r"'cut\.png' is a damaged or unsupported image"
    ):
        DigitsModel().predict(image=upload(path), top_k=3)


def test_predict_rejects_a_blank_image(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (200, 200, 200)).save(path)
    with pytest.raises(ValueError, match=r"'blank\.png' shows no digit"):
        DigitsModel().predict(image=upload(path), top_k=3)


def test_predict_without_image_raises():
    with pytest.raises(ValueError, match=r"'image' is required"):
        DigitsModel().predict(top_k=3)


def test_declarations_are_usable_by_deepaas():
    model = DigitsModel()
    wrapper = ModelWrapper("demo", model)
    assert wrapper.accept_choices == ["application/json", "image/png", "text/plain"]
    assert sorted(wrapper.predict_fields) == ["accept", "image", "top_k"]
    assert wrapper.predict_fields["image"].metadata["type"] == "file"
    assert wrapper.predict_fields["top_k"].load_default == 3
    train = wrapper.train_fields
    assert {name: field.load_default for name, field in train.items()} == {
        "epochs": 30,
        "learning_rate": 0.5,
        "hidden": 0,
        "seed": 0,
    }
    with pytest.raises(ValidationError):
        train["learning_rate"].deserialize(0)
    with pytest.raises(ValidationError):
        train["hidden"].deserialize(257)
    metadata = wrapper.metadata()
    assert metadata["name"] == "demo"
    assert metadata["license"] == "Apache-2.0"
    assert metadata["weights"]["source"] == "bundled"
    wrapper.validate_response(
        {"label": 1, "probability": 0.5, "top_k": [{"label": 1, "probability": 0.5}]}
    )


def test_state_dir_defaults_to_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(_net.STATE_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _net.state_dir() == tmp_path / ".cache" / "deepaas-demo"


def test_train_saves_weights_that_predict_then_uses(
    tmp_path, state_dir, test_split, capsys
):
    server = DigitsModel()
    server.warm()
    image = render_digit(first_of(test_split, 4), tmp_path / "four.png")
    server.predict(image=image, top_k=3)
    assert server.get_metadata()["weights"]["source"] == "bundled"

    # Training runs in another process in deepaas: another instance stands for it.
    result = DigitsModel().train(epochs=3, learning_rate=0.5, hidden=16, seed=1)

    assert sorted(result) == [
        "epochs",
        "hidden",
        "loss",
        "seconds",
        "test_accuracy",
        "train_accuracy",
        "weights_path",
    ]
    assert result["epochs"] == 3
    assert result["hidden"] == 16
    assert result["test_accuracy"] >= 0.85
    assert 0.0 <= result["train_accuracy"] <= 1.0
    assert result["loss"] > 0
    assert result["weights_path"] == str(state_dir / "weights.npz")
    assert (state_dir / "weights.npz").is_file()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]

    assert server.predict(image=image, top_k=3)["label"] == 4
    weights = server.get_metadata()["weights"]
    assert weights == {
        "source": "trained",
        "hidden": 16,
        "test_accuracy": result["test_accuracy"],
    }

    # A second training replaces the file; the server notices again.
    DigitsModel().train(epochs=2, hidden=0)
    server.predict(image=image, top_k=3)
    assert server.get_metadata()["weights"]["hidden"] == 0


def test_corrupt_trained_weights_fall_back_to_bundled(state_dir, caplog):
    state_dir.mkdir()
    (state_dir / "weights.npz").write_bytes(b"PK\x03\x04 cut short")
    model = DigitsModel()
    with caplog.at_level("WARNING", logger="deepaas.demo.model"):
        assert model.get_metadata()["weights"]["source"] == "bundled"
        assert model.get_metadata()["weights"]["source"] == "bundled"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "is not a demo weights file: File is not a zip file" in warnings[0]


def test_training_is_deterministic_and_reports_divergence():
    data = _net.load_dataset()
    first = _net.train(data, epochs=2, hidden=8, seed=3)
    second = _net.train(data, epochs=2, hidden=8, seed=3)
    for (w1, b1), (w2, b2) in zip(
        first.network.layers, second.network.layers, strict=True
    ):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    with pytest.raises(ValueError, match="training diverged at epoch 1"):
        _net.train(data, epochs=2, hidden=8, learning_rate=1e308)


def test_predict_rejects_a_picture_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(_image, "MAX_PIXELS", 1000)
    path = tmp_path / "huge.png"
    Image.new("L", (64, 64), 255).save(path)
    with pytest.raises(ValueError, match=r"'huge\.png' is too large: 64x64 pixels"):
        DigitsModel().predict(image=upload(path), top_k=3)


def test_sixteen_bit_pictures_are_scaled_not_clipped(tmp_path, test_split):
    eight_bit = tmp_path / "eight.png"
    render_digit(first_of(test_split, 5), eight_bit)
    sixteen = np.asarray(Image.open(eight_bit), dtype=np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as check:
        assert check.mode == "I;16"
    np.testing.assert_allclose(
        _image.load_digit(tmp_path / "sixteen.png"), _image.load_digit(eight_bit)
    )


def test_default_training_reproduces_the_bundled_weights():
    bundled = _net.Network.load(_net.BUNDLED_WEIGHTS)
    retrained = _net.train(_net.load_dataset()).network
    assert retrained.meta == pytest.approx(bundled.meta)
    for (w1, b1), (w2, b2) in zip(bundled.layers, retrained.layers, strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-6)
        np.testing.assert_allclose(b1, b2, atol=1e-6)
