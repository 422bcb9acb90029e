"""
Title: lab03's CNN on several devices or machines, with tf.distribute and a plain training loop
Description: The lab's first CIFAR-10 CNN (1,756,938 parameters) trained under a
    tf.distribute strategy: one device, every GPU of one machine (MirroredStrategy) or
    several machines (MultiWorkerMirroredStrategy). Each step splits one global batch
    across the replicas and sums their gradients, so every replica holds the same
    weights. The loop is TensorFlow's own (Keras 3's fit cannot train under
    MultiWorkerMirroredStrategy), with a checkpoint after every epoch: kill the workers,
    start them all again, and they go on from the last epoch.
Result: what scaling out looks like, not a faster run on one CPU: two workers on one
    2-core machine share its cores. `--strategy mirrored --cpu-devices 2` on the stand-in
    matches the one-device run's accuracy in the same number of epochs.
Run: python distributed_cifar_cnn.py --strategy mirrored --cpu-devices 2 --epochs 2 --limit 512
     README, Scaling out: several GPUs (mirrored) or several machines (multi-worker, TF_CONFIG).

--batch-size is the GLOBAL batch: every step takes that many images, split evenly across
the replicas, so it must be a multiple of their number.
"""

# %% [markdown]
# ## Setup
# The knobs: the strategy and the shared flags. `--cpu-devices N` splits the CPU into N
# logical devices, so the multi-replica code path can be tried without GPUs.

# %% tags=["parameters"]
# In a notebook the flags come from here (on the command line, from sys.argv), e.g.:
# ARGS = "--strategy mirrored --cpu-devices 2 --epochs 2 --limit 512"
ARGS = ""

# %%
from common import cli, console
from common.errors import UserError
from common.run import Run

parser = cli.make_parser(__doc__, epochs=5, batch_size=64, out="outputs/distributed", dataset="cifar10",
                         batch_size_help="images per step across all replicas (default: 64, lab03's 32 per "
                         "replica on two)")
parser.add_argument("--strategy", choices=["one-device", "mirrored", "multi-worker"], default="mirrored",
                    help="one-device (the first GPU, else the CPU), mirrored (one replica per local GPU, or per "
                    "--cpu-devices logical CPU; default), multi-worker (the machines in TF_CONFIG)")
parser.add_argument("--cpu-devices", type=cli.positive_int, default=1,
                    help="split the CPU into this many logical devices, to try --strategy mirrored without GPUs "
                    "(for learning and testing: the replicas share the same cores)")
config = cli.parse(parser, ARGS)
run = Run(config, "distributed")  # on a worker that is not the chief: a temporary folder of its own

with console.quiet_tensorflow():  # TensorFlow's start-up notices stay out of the output
    import keras
    import tensorflow as tf

from common import datasets, distribute, models, plots

# The strategy first: multi-worker training must configure TensorFlow before it lists devices.
strategy = distribute.make_strategy(config.strategy, cpu_devices=config.cpu_devices)
keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
replicas = strategy.num_replicas_in_sync
print(f"strategy {config.strategy}: {distribute.describe(strategy)}; global batch {config.batch_size}, "
      f"{config.batch_size // replicas} per replica")
if config.batch_size % replicas:
    raise UserError(f"--batch-size {config.batch_size} does not split evenly across {replicas} replicas: "
                        f"give a multiple of {replicas}")

# %% [markdown]
# ## Load CIFAR-10 and build the input pipelines
# Every worker reads the same arrays in the same shuffled order (the same seed);
# `distribute.train` keeps each worker's share of every global batch. The last, smaller
# batch is dropped, so no replica ever gets an empty share.

# %%
data = datasets.load_cifar10(config.data, config.data_dir, config.limit, config.seed)


def scale_to_unit(images, labels):
    """uint8 (B, 32, 32, 3) -> float32 in [0, 1], as the lab's `X / 255.0`."""
    return tf.cast(images, tf.float32) / 255.0, labels


train_dataset = (
    tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    .shuffle(len(data.x_train), seed=config.seed)
    .batch(config.batch_size, drop_remainder=True)
    .map(scale_to_unit, num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(tf.data.AUTOTUNE)
)
test_dataset = tf.data.Dataset.from_tensor_slices((data.x_test, data.y_test)).batch(500).map(scale_to_unit)

# %% [markdown]
# ## Build the model under the strategy, and train
# Variables created inside `strategy.scope()` are mirrored: one copy per replica, kept
# equal by summing the gradients of every replica before each update.

# %%
with strategy.scope():
    model = models.cifar_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.summary()
trained_now = distribute.train(model, train_dataset, strategy=strategy, epochs=config.epochs,
                               validation_data=test_dataset, checkpoint_dir=run.scratch("checkpoints"),
                               log=run.path("epochs_cnn.csv"))
history = run.history("cnn")
# Every worker trains in step, so every worker ends with the same weights.
print(f"weights checksum {distribute.weights_checksum(model)} (the same on every worker)", flush=True)

# %% [markdown]
# ## Evaluate
# Keras' `predict` under MultiWorkerMirroredStrategy would see this worker's shard only;
# `distribute.evaluate` runs the whole test set on this worker's copy of the weights.

# %%
test = distribute.evaluate(model, test_dataset)
print(f"Testing accuracy: {test['accuracy']:.4f}" + ("" if data.is_standin else "   (lab03, one device: 0.7087)"))
dataset_name = "stand-in" if data.is_standin else "CIFAR-10"
run.save_figure(plots.confusion_matrix_figure(data.y_test, test["predicted"], data.class_names,
                                              title=f"{dataset_name}: CNN under {config.strategy}"),
                "confusion_matrix.png")
run.save_figure(plots.training_curves({"CNN": history}, title=f"{dataset_name}: {distribute.describe(strategy)}"),
                "training_curves.png")
run.finish({
    "settings": {"strategy": config.strategy, "replicas": replicas, "workers": distribute.workers(strategy),
                 "global_batch_size": config.batch_size, "epochs": config.epochs, "seed": config.seed},
    "test_accuracy": test["accuracy"], "test_images_predicted": len(test["predicted"]),
    "epochs_trained_now": trained_now, "history": history,
    "weights_checksum": distribute.weights_checksum(model),
}, {"accuracy": test["accuracy"], "replicas": replicas, "epoch_s": sum(history.get("train_seconds", [0]))
    / max(len(history.get("train_seconds", [])), 1)}, data=data)
