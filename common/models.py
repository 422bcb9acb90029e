"""The lab's models, one builder each, returned uncompiled.

=============================  =================  ==========  ===========
builder                        input              parameters  lab section
=============================  =================  ==========  ===========
``softmax_regression``         (784,)                  7,850  MNIST
``mnist_cnn``                  (28, 28, 1)            93,322  MNIST
``cifar_cnn``                  (32, 32, 3)         1,756,938  CIFAR-10, arrays
``cifar_cnn_pipeline``         (24, 24, 3)         1,068,810  CIFAR-10, tf.data
``wildlife_classifier``        (224, 224, 3)       a flag      the assignment (Oregon Wildlife)
=============================  =================  ==========  ===========

Keras 3 deprecates ``input_shape=`` on the first layer, so each model starts
with an explicit ``keras.Input``; the layers and counts are the lab's. Under a
mixed-precision policy the CIFAR models keep their softmax in float32, as Keras'
mixed-precision guide advises (probabilities and the cross-entropy's logarithm are
where 16-bit numbers lose the most); under float32, the default, that changes nothing.
:func:`check_imagenet_weights` says, before any work, whether a pretrained
backbone's weights are cached or can be downloaded.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras
from keras import layers

from common.errors import UserError


def softmax_regression(input_dim: int = 784, classes: int = 10, name: str = "softmax_regression"):
    """One dense softmax layer on flattened pixels: ``input_dim * classes + classes`` weights."""
    return keras.Sequential(
        [keras.Input(shape=(input_dim,)), layers.Dense(classes, activation="softmax")],
        name=name,
    )


def mnist_convolutional_base(input_shape=(28, 28, 1), name: str = "convolutional_base"):
    """The convolutional base of the lab's MNIST CNN, on its own (to look at, as the lab does).

    Three 3x3 convolutions (32, 64, 64 filters) with 2x2 max-pooling after the
    first two: (28, 28, 1) -> (3, 3, 64), 55,744 parameters.
    """
    return keras.Sequential([keras.Input(shape=input_shape), *_mnist_convolution_layers()], name=name)


def mnist_cnn(input_shape=(28, 28, 1), classes: int = 10, dropout: float = 0.5, name: str = "mnist_cnn"):
    """The lab's MNIST CNN: the convolutional base, then dense 64, dropout, softmax.

    93,322 parameters for 28x28x1 inputs and 10 classes.
    """
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *_mnist_convolution_layers(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(classes, activation="softmax"),
        ],
        name=name,
    )


def cifar_cnn(input_shape=(32, 32, 3), classes: int = 10, dropout: float = 0.5, name: str = "cifar_cnn"):
    """The lab's first CIFAR-10 CNN, trained on in-memory arrays.

    Two blocks of 5x5 convolution (64 filters), 3x3/2 max-pooling and batch
    normalisation, then dense 384 with dropout, dense 192 and softmax: 1,756,938
    parameters (256 of them non-trainable batch-norm statistics) for 32x32x3.
    The lab's printed summary has a batch normalisation after each pooling layer
    (its code cell, cut off, shows one); the summary's count is the one we match.
    """
    return keras.Sequential([keras.Input(shape=input_shape), *_convolution_blocks(),
                             *_cifar_head(classes, dropout, second_dropout=False)], name=name)


def cifar_cnn_pipeline(
    input_shape=(24, 24, 3), classes: int = 10, dropout: float = 0.5, name: str = "cifar_cnn_pipeline"
):
    """The lab's second CIFAR-10 CNN, fed 24x24 crops by a ``tf.data`` pipeline.

    The same convolution blocks as :func:`cifar_cnn`, with dropout after both
    dense layers: 1,068,810 parameters for 24x24x3 inputs.
    """
    return keras.Sequential([keras.Input(shape=input_shape), *_convolution_blocks(),
                             *_cifar_head(classes, dropout, second_dropout=True)], name=name)


def wildlife_classifier(backbone: str, weights: str, head: str, classes: int, crop_size: int):
    """The assignment's classifier: a backbone under the lab's dense head, softmax output.

    Input: ``(crop_size, crop_size, 3)`` float32 in [0, 1]; each ImageNet backbone
    gets the input scaling it was trained with.

    Parameters
    ----------
    backbone : {"small_cnn", "mobilenet_v3_small", "vgg16"}
        ``vgg16`` is the lab's (ImageNet weights, frozen); ``small_cnn`` a light
        4-convolution CNN from scratch, for CPUs.
    weights : {"imagenet", "none"}
    head : {"flatten", "gap"}
        ``flatten`` is the lab's Flatten + Dense 4096/1024; ``gap`` puts
        GlobalAveragePooling before the same Dense layers.
    classes, crop_size : int
    """

    class CaffePreprocess(layers.Layer):
        """VGG16's ImageNet input: [0, 1] RGB -> 0-255 BGR minus the ImageNet mean pixel."""

        def call(self, images):
            bgr = keras.ops.flip(images, axis=-1) * 255.0
            return bgr - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=images.dtype)

    def small_cnn(inputs):
        x = layers.Conv2D(16, 5, strides=2, padding="same", activation="relu")(inputs)
        for filters in (32, 64, 128):
            x = layers.MaxPooling2D(2)(x)
            # Keras' default momentum 0.99 needs hundreds of steps before the test-time statistics fit.
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        return layers.MaxPooling2D(2)(x)

    inputs = keras.Input((crop_size, crop_size, 3))
    shape, keras_weights = (crop_size, crop_size, 3), "imagenet" if weights == "imagenet" else None
    if backbone == "small_cnn":
        features = small_cnn(inputs)
    elif backbone == "vgg16":
        base = keras.applications.VGG16(include_top=False, weights=keras_weights, input_shape=shape)
        base.trainable = weights != "imagenet"  # the lab freezes the pretrained layers
        features = base(CaffePreprocess()(inputs))
    else:
        base = keras.applications.MobileNetV3Small(include_top=False, weights=keras_weights, input_shape=shape,
                                                   include_preprocessing=True)  # expects 0-255
        base.trainable = weights != "imagenet"
        features = base(layers.Rescaling(255.0)(inputs))
    x = layers.Flatten()(features) if head == "flatten" else layers.GlobalAveragePooling2D()(features)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"wild_model_{backbone}_{head}")


# --- ImageNet weights -----------------------------------------------------------------

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHT_FILES = {  # what keras.applications looks for in $KERAS_HOME/models, and where it comes from
    "vgg16": "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet_v3_small": "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
}


def check_imagenet_weights(backbone: str) -> None:
    """Fail at once, with what to do, when ``backbone``'s ImageNet weights are neither cached nor downloadable.

    Raises
    ------
    UserError
        Not in ``$KERAS_HOME/models`` and no network (or ``LAB_OFFLINE`` set).
    """
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    weight_file = keras_home / "models" / Path(WEIGHT_FILES[backbone]).name
    if weight_file.is_file():
        return
    reachable = False
    if not os.environ.get("LAB_OFFLINE"):
        try:  # Keras' own download has no timeout: probe first, so an offline machine does not hang
            socket.create_connection(("storage.googleapis.com", 443), timeout=5).close()
            reachable = True
        except OSError:
            pass
    if not reachable:
        raise UserError(
            f"--backbone {backbone} needs ImageNet weights, which are not in the Keras cache and cannot be "
            f"downloaded (no network). Either put {weight_file.name} (from {WEIGHTS_URL}{WEIGHT_FILES[backbone]}) "
            f"into {weight_file.parent}/, or pass --weights none to train the backbone from scratch, or use "
            "--backbone small_cnn (the CPU default).")


def _mnist_convolution_layers():
    return [
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
    ]


def _convolution_blocks():
    return [
        layers.Conv2D(64, (5, 5), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=3, strides=2, padding="same"),
        layers.BatchNormalization(),
        layers.Conv2D(64, (5, 5), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=3, strides=2, padding="same"),
        layers.BatchNormalization(),
    ]


def _cifar_head(classes: int, dropout: float, *, second_dropout: bool):
    """Flatten, dense 384 and dropout, dense 192 (and dropout), softmax: the lab's CIFAR-10 head."""
    return [
        layers.Flatten(),
        layers.Dense(384, activation="relu"),
        layers.Dropout(dropout),
        layers.Dense(192, activation="relu"),
        *([layers.Dropout(dropout)] if second_dropout else []),
        layers.Dense(classes, activation="softmax", dtype="float32"),  # float32 also under mixed precision
    ]
