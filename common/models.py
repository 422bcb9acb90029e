"""The lab's models, one builder each, returned uncompiled.

=============================  =================  ==========  ===========
builder                        input              parameters  lab section
=============================  =================  ==========  ===========
``softmax_regression``         (784,)                  7,850  MNIST
``mnist_cnn``                  (28, 28, 1)            93,322  MNIST
``cifar_cnn``                  (32, 32, 3)         1,756,938  CIFAR-10, arrays
``cifar_cnn_pipeline``         (24, 24, 3)         1,068,810  CIFAR-10, tf.data
=============================  =================  ==========  ===========

Keras 3 deprecates ``input_shape=`` on the first layer, so each model starts
with an explicit ``keras.Input``; the layers and counts are the lab's.
"""

from __future__ import annotations

import keras
from keras import layers


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
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *_convolution_blocks(),
            layers.Flatten(),
            layers.Dense(384, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(192, activation="relu"),
            layers.Dense(classes, activation="softmax"),
        ],
        name=name,
    )


def cifar_cnn_pipeline(
    input_shape=(24, 24, 3), classes: int = 10, dropout: float = 0.5, name: str = "cifar_cnn_pipeline"
):
    """The lab's second CIFAR-10 CNN, fed 24x24 crops by a ``tf.data`` pipeline.

    The same convolution blocks as :func:`cifar_cnn`, with dropout after both
    dense layers: 1,068,810 parameters for 24x24x3 inputs.
    """
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *_convolution_blocks(),
            layers.Flatten(),
            layers.Dense(384, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(192, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(classes, activation="softmax"),
        ],
        name=name,
    )


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
