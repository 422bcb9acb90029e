"""
Title: Softmax regression and a small CNN on MNIST
Description: The lab's first section. Softmax regression on the raw pixels (7,850
    parameters) draws straight lines between the classes; a small convolutional
    network (93,322 parameters, dropout 0.5) learns stroke detectors. 5 epochs each:
    the lab reaches 0.9244 and 0.9912 test accuracy on MNIST.
Result: 0.9030 / 0.9670 test accuracy, 5 epochs, 21 s on 2 CPU cores (AMD EPYC), on the offline
    stand-in (5,000 real MNIST digits): `python lab01_mnist.py --data standin`. Not yet measured
    on the full MNIST.
Run: python lab01_mnist.py --epochs 1 --limit 2000   (a quick run, ~10 s)
    python lab01_mnist.py --data-dir DIR   (DIR holds mnist.npz or the four IDX .gz files)
"""

# %% [markdown]
# ## Setup
# The lab's settings are the defaults: 5 epochs, batches of 32, dropout 0.5.
# `--dataset fashion_mnist` trains the same models on clothes instead of digits.

# %% tags=["parameters"]
# In a notebook, the flags come from here (on the command line, from sys.argv), e.g.:
# ARGS = "--epochs 1 --limit 2000"
ARGS = ""

# %%
from common import cli, console
from common.run import Run

parser = cli.make_parser(__doc__, epochs=5, batch_size=32, out="outputs/lab01", dataset="mnist")
parser.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="mnist",
                    help="which 28x28 grayscale dataset to use (default: mnist)")
parser.add_argument("--dropout", type=cli.rate, default=0.5,
                    help="dropout rate before the CNN's readout layer (lab: 0.5)")
config = cli.parse(parser, ARGS)  # also refuses a --limit too small for the dataset, before any work
run = Run(config, "lab01")  # the output folder: resume, status, Ctrl-C

import numpy as np  # the libraries after the flags, so --help answers at once

with console.quiet_tensorflow():  # TensorFlow's start-up notices stay out of the output
    import keras

from common import datasets, models, plots

keras.utils.set_random_seed(config.seed)  # Python, NumPy and TensorFlow: the same run every time

# %% [markdown]
# ## Load and normalise the data
# Pixels arrive as integers 0-255; dividing by 255 puts them in [0, 1], the range
# the default weight initialisation expects.

# %%
data = datasets.load_mnist(data=config.data, data_dir=config.data_dir, limit=config.limit,
                           seed=config.seed, dataset=config.dataset)
print(f"data: {data.source}")
train_images = data.x_train.astype("float32") / 255.0
test_images = data.x_test.astype("float32") / 255.0
train_labels, test_labels = data.y_train, data.y_test
print("shape of train_images:", train_images.shape)
print("shape of test_images: ", test_images.shape)
# The lab's figures are for MNIST: compare with them only on the real thing.
on_mnist = data.name == "mnist" and not data.is_standin
name = data.name + (" (stand-in)" if data.is_standin else "")  # for figure titles
if data.is_standin and data.name == "fashion_mnist":
    name = "fashion_mnist (stand-in: MNIST digits, no clothes ship offline)"

figure = plots.image_grid(data.x_train[:32], [data.class_names[label] for label in train_labels[:32]],
                          title=f"{name} training images")
run.save_figure(figure, "sample_digits.png")

# %% [markdown]
# ## Softmax regression on MNIST
# One dense layer maps the 784 pixels to 10 class probabilities: 784 x 10 weights
# plus 10 biases = 7,850 parameters. It can only draw straight lines (hyperplanes)
# between the classes in pixel space.

# %%
pixel_count = train_images.shape[1] * train_images.shape[2]
train_vectors = train_images.reshape(len(train_images), pixel_count)
test_vectors = test_images.reshape(len(test_images), pixel_count)

softmax_model = models.softmax_regression(input_dim=pixel_count, classes=len(data.class_names))
softmax_model.summary()
softmax_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
softmax_model.fit(train_vectors, train_labels, epochs=config.epochs, batch_size=config.batch_size,
                  validation_data=(test_vectors, test_labels),  # only to draw the test curve; training never sees it
                  verbose=console.keras_verbose(), callbacks=run.callbacks("softmax"))
_, softmax_accuracy = softmax_model.evaluate(test_vectors, test_labels, verbose=0)
print(f"Softmax regression test accuracy: {softmax_accuracy:.4f}" + (" (lab: 0.9244)" if on_mnist else ""))

# %% [markdown]
# ## Multilayer convolutional network on MNIST
#
# ### Create the convolutional base
# Three 3x3 convolutions (32, 64, 64 filters) with 2x2 max-pooling learn local stroke
# detectors that fire wherever a stroke appears. Convolutions expect a channel axis:
# (28, 28) becomes (28, 28, 1). The base turns each digit into a (3, 3, 64) block of
# features, with 55,744 parameters.

# %%
train_images = train_images[..., np.newaxis]
test_images = test_images[..., np.newaxis]
models.mnist_convolutional_base(input_shape=train_images.shape[1:]).summary()

# %% [markdown]
# ### Add Dense layers on top
# The (3, 3, 64) features are flattened to 576 values, then a dense layer of 64 units
# and dropout 0.5 (each unit is zeroed with probability 0.5 during training, an
# ensemble-like regulariser) lead to the 10-way softmax: 93,322 parameters in all.
#
# ### Compile and train the model
# Then test digits with the CNN's predictions (red: wrong; many of the mistakes are
# digits a person would hesitate over too).

# %%
cnn_model = models.mnist_cnn(input_shape=train_images.shape[1:], classes=len(data.class_names),
                             dropout=config.dropout)
cnn_model.summary()
cnn_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
cnn_model.fit(train_images, train_labels, epochs=config.epochs, batch_size=config.batch_size,
              validation_data=(test_images, test_labels), verbose=console.keras_verbose(),
              callbacks=run.callbacks("cnn"))
_, cnn_accuracy = cnn_model.evaluate(test_images, test_labels, verbose=0)
print(f"CNN test accuracy: {cnn_accuracy:.4f}" + (" (lab: 0.9912)" if on_mnist else ""))

predicted = np.argmax(cnn_model.predict(test_images, batch_size=1024, verbose=0), axis=1)
wrong = np.flatnonzero(predicted != test_labels)
shown = np.concatenate([np.arange(min(24, len(test_labels))), wrong[wrong >= 24][:8]])  # then mistakes
figure = plots.prediction_grid(data.x_test[shown], test_labels[shown], predicted[shown], data.class_names,
                               title=f"CNN predictions on {name} test images "
                                     f"({len(wrong)} of {len(test_labels)} wrong)")
run.save_figure(figure, "predictions.png")

# %% [markdown]
# ## Results
# Loss and accuracy per epoch, on the training images (filled circles) and on the
# test images (hollow squares).

# %%
softmax_history, cnn_history = run.history("softmax"), run.history("cnn")  # every epoch, resumed ones too
run.save_figure(plots.training_curves({"softmax regression": softmax_history, "CNN": cnn_history},
                                      title=f"{name}: training loss and accuracy"), "training_curves.png")
softmax_seconds = sum(softmax_history["train_seconds"])
cnn_seconds = sum(cnn_history["train_seconds"])
run.finish(
    {"softmax_regression": {"parameters": softmax_model.count_params(), "test_accuracy": softmax_accuracy,
                            "train_seconds": softmax_seconds, "history": softmax_history},
     "cnn": {"parameters": cnn_model.count_params(), "test_accuracy": cnn_accuracy, "test_errors": len(wrong),
             "train_seconds": cnn_seconds, "history": cnn_history}},
    {"dataset": data.name, "softmax_accuracy": softmax_accuracy, "cnn_accuracy": cnn_accuracy,
     "softmax_train_s": softmax_seconds, "cnn_train_s": cnn_seconds},
    data=data,
)
