"""The lab's model builders: exact parameter counts and output shapes; the assignment's classifier."""

import numpy as np
import pytest

from common import models

# (builder, input shape, total, non-trainable) from the lab's printed summaries.
LAB_SUMMARIES = [
    (models.softmax_regression, (784,), 7_850, 0),
    (models.mnist_cnn, (28, 28, 1), 93_322, 0),
    (models.cifar_cnn, (32, 32, 3), 1_756_938, 256),
    (models.cifar_cnn_pipeline, (24, 24, 3), 1_068_810, 256),
]


@pytest.mark.parametrize(("builder", "input_shape", "total", "non_trainable"), LAB_SUMMARIES,
                         ids=[entry[0].__name__ for entry in LAB_SUMMARIES])
def test_parameter_counts_match_the_lab(builder, input_shape, total, non_trainable):
    model = builder()
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert model.count_params() == total
    assert total - trainable == non_trainable
    assert tuple(model.input_shape[1:]) == input_shape


@pytest.mark.parametrize(("builder", "input_shape"), [(entry[0], entry[1]) for entry in LAB_SUMMARIES],
                         ids=[entry[0].__name__ for entry in LAB_SUMMARIES])
def test_outputs_are_class_probabilities(builder, input_shape):
    model = builder()
    inputs = np.random.default_rng(0).random((3, *input_shape), dtype=np.float32)
    probabilities = np.asarray(model(inputs, training=False))
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


def test_mnist_convolutional_base_matches_the_labs_summary():
    base = models.mnist_convolutional_base()
    assert base.count_params() == 55_744 and tuple(base.output_shape[1:]) == (3, 3, 64)
    cnn_layers = [type(layer).__name__ for layer in models.mnist_cnn().layers]
    assert cnn_layers[: len(base.layers)] == [type(layer).__name__ for layer in base.layers]


def test_cifar_models_share_the_convolutional_base_and_differ_in_dropout():
    arrays_layers = [type(layer).__name__ for layer in models.cifar_cnn().layers]
    pipeline_layers = [type(layer).__name__ for layer in models.cifar_cnn_pipeline().layers]
    assert arrays_layers[:7] == pipeline_layers[:7]
    assert arrays_layers.count("Dropout") == 1
    assert pipeline_layers.count("Dropout") == 2


def test_builders_return_uncompiled_models():
    assert not models.cifar_cnn().compiled


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_wildlife_classifier_outputs_probabilities_for_any_crop(head):
    model = models.wildlife_classifier("small_cnn", "none", head, classes=10, crop_size=64)
    assert model.name == f"wild_model_small_cnn_{head}" and tuple(model.input_shape[1:]) == (64, 64, 3)
    probabilities = np.asarray(model(np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)))
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert not model.compiled


def test_check_imagenet_weights_says_what_to_do_offline_and_passes_when_cached(tmp_path, monkeypatch):
    from common.errors import UserError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # LAB_OFFLINE=1 (conftest): no download is tried
    with pytest.raises(UserError, match=r"vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5.*--weights none"):
        models.check_imagenet_weights("vgg16")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"cached")
    assert models.check_imagenet_weights("vgg16") is None
