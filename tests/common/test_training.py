"""common.training: the epoch timer, timing and the epoch table, atomic saves, starting weights, mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import distribute, training


def tiny_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def test_the_epoch_timer_adds_train_and_validation_seconds_to_every_epochs_logs():
    inputs = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    labels = np.arange(64) % 3
    model = tiny_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class SlowValidation(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            import time
            time.sleep(0.2)

    history = model.fit(inputs, labels, batch_size=16, epochs=3, validation_data=(inputs, labels),
                        callbacks=[training.EpochTimer(), SlowValidation()], verbose=0).history
    assert len(history["train_seconds"]) == len(history["validation_seconds"]) == 3
    assert all(seconds > 0 for seconds in history["train_seconds"])
    assert all(seconds >= 0.2 for seconds in history["validation_seconds"])  # kept out of train_seconds
    assert all(seconds < 0.2 + max(history["train_seconds"]) for seconds in history["train_seconds"])


def batch_norm_model():
    return keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 3, padding="same"),
                             keras.layers.BatchNormalization(), keras.layers.Conv2D(2, 1),
                             keras.layers.BatchNormalization(), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def test_batch_norm_statistics_are_recomputed_from_the_images_layer_by_layer():
    images = 5.0 + np.random.default_rng(0).random((40, 4, 4, 2), dtype=np.float32)  # far from mean 0, variance 1
    model = batch_norm_model()
    first, second = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    inputs_of_first = np.asarray(keras.Model(model.inputs[0], first.input)(images)).reshape(-1, 3)
    # One batch of all 40 images: training mode normalises the first layer's output with their statistics.
    inputs_of_second = np.asarray(keras.Model(model.inputs[0], second.input)(images, training=True)).reshape(-1, 2)
    assert training.recompute_batch_norm_statistics(model, images, batch_size=40) == 2
    np.testing.assert_allclose(first.moving_mean.numpy(), inputs_of_first.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), inputs_of_first.var(axis=0), rtol=1e-4)
    np.testing.assert_allclose(second.moving_mean.numpy(), inputs_of_second.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(second.moving_variance.numpy(), inputs_of_second.var(axis=0), rtol=1e-4)
    # In batches of 16 (16, 16, 8): the same totals for the first layer, whatever the split.
    training.recompute_batch_norm_statistics(model, images, batch_size=16)
    np.testing.assert_allclose(first.moving_mean.numpy(), inputs_of_first.mean(axis=0), rtol=1e-5)
    assert training.recompute_batch_norm_statistics(tiny_model(), images[:, 0, 0, :1]) == 0


def test_a_short_fit_tests_with_the_trained_statistics_not_the_lagging_moving_averages():
    rng = np.random.default_rng(0)
    images = 5.0 + rng.random((64, 4, 4, 2), dtype=np.float32)
    labels = np.arange(64) % 3

    def fit(callbacks):
        keras.utils.set_random_seed(0)
        model = batch_norm_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(images, labels, batch_size=32, epochs=1, validation_data=(images, labels), verbose=0,
                  callbacks=callbacks)
        return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)][0]

    # Two steps move the moving mean 1% each towards the batch means (about 5): still near 0.
    assert np.all(fit([]).moving_mean.numpy() < 1.0)
    first_norm = fit([training.RecomputeBatchNormStatistics(images, max_images=48, seed=1)])
    assert np.all(np.abs(first_norm.moving_mean.numpy()) > 1.0)


def test_the_statistics_callback_samples_its_images_once_and_prepares_them_once():
    images = np.arange(100, dtype=np.float32).reshape(100, 1)
    prepared = []

    def prepare(sample):
        prepared.append(len(sample))
        return sample * 2

    state = np.random.get_state()[1].copy()
    callback = training.RecomputeBatchNormStatistics(images, prepare=prepare, max_images=10, seed=3)
    again = training.RecomputeBatchNormStatistics(images, prepare=prepare, max_images=10, seed=3)
    assert prepared == [10, 10] and callback.images.shape == (10, 1)
    np.testing.assert_array_equal(callback.images, again.images)  # seeded: the same sample every run
    assert np.all(np.diff(callback.images[:, 0]) > 0) and np.all(callback.images % 2 == 0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the run's own random sequence is untouched
    assert len(training.RecomputeBatchNormStatistics(images[:7], max_images=10).images) == 7


def test_timing_leaves_the_first_epoch_out_of_the_means():
    timing = training.timing({"train_seconds": [9.0, 2.0, 4.0], "validation_seconds": [1, 1, 1]}, 600)
    assert timing["seconds_per_epoch"] == 3.0 and timing["images_per_second"] == 200.0
    assert timing["images_per_second_per_epoch"] == [66.7, 300.0, 150.0]
    assert training.timing({"train_seconds": [5.0]}, 100)["seconds_per_epoch"] == 5.0
    assert training.timing({}, 100)["images_per_second"] == 0.0


def test_epoch_table_has_a_row_per_epoch_with_images_per_second():
    history = {"loss": [1.0, 0.5], "accuracy": [0.4, 0.6], "val_loss": [1.1, 0.7], "val_accuracy": [0.3, 0.5],
               "train_seconds": [2.0, 4.0]}
    table = training.epoch_table(history, 400).splitlines()
    assert len(table) == 4 and table[0].split()[0] == "epoch"
    assert table[2].split() == ["1", "1.0000", "0.4000", "1.1000", "0.3000", "2.0", "200"]
    assert table[3].split()[-1] == "100"


def test_save_model_writes_a_loadable_keras_file_and_no_leftovers(tmp_path):
    model = tiny_model()
    path = training.save_model(model, tmp_path / "tiny.keras")
    assert [entry.name for entry in tmp_path.iterdir()] == ["tiny.keras"]
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(np.ones((1, 4), np.float32)), model(np.ones((1, 4), np.float32)))


def test_a_failed_save_leaves_the_old_file_and_no_leftovers(tmp_path):
    path = training.save_weights(tiny_model(), tmp_path / "w.weights.h5")
    before = path.read_bytes()

    class Broken(keras.Model):
        def save_weights(self, filepath, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        training.save_weights(Broken(), path)
    assert path.read_bytes() == before and [entry.name for entry in tmp_path.iterdir()] == ["w.weights.h5"]


def test_starting_weights_are_saved_once_and_a_resumed_run_starts_from_the_earlier_sessions(tmp_path):
    class FakeRun:
        def __init__(self, resumed):
            self.resumed = resumed

        def scratch(self, name):
            (tmp_path / name).mkdir(exist_ok=True)
            return tmp_path / name

    first = tiny_model()
    path = training.starting_weights(first, FakeRun(False))
    resumed = tiny_model()  # other random weights, as after a restart
    assert distribute.weights_checksum(resumed) != distribute.weights_checksum(first)
    assert training.starting_weights(resumed, FakeRun(True)) == path
    assert distribute.weights_checksum(resumed) == distribute.weights_checksum(first)
    new_run = tiny_model()  # not a resume: its own weights replace the file
    training.starting_weights(new_run, FakeRun(False))
    first.load_weights(path)
    assert distribute.weights_checksum(first) == distribute.weights_checksum(new_run)
    assert [entry.name for entry in path.parent.iterdir()] == ["initial.weights.h5"]


def test_native_bfloat16_is_read_from_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags : fpu sse avx2 avx512f\n")
    assert not training.cpu_has_native_bfloat16(cpuinfo)
    cpuinfo.write_text("flags : fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    assert training.cpu_has_native_bfloat16(cpuinfo)
    assert not training.cpu_has_native_bfloat16(tmp_path / "missing")


@pytest.mark.parametrize("capabilities, expected", [
    ([(8, 0)], True), ([(7, 0), (7, 5)], True), ([(6, 1)], False), ([(8, 6), (6, 0)], False), ([None], False),
])
def test_half_precision_is_fast_on_gpus_only_with_tensor_cores(monkeypatch, capabilities, expected):
    gpus = [f"GPU:{index}" for index in range(len(capabilities))]
    details = {gpu: ({} if capability is None else {"compute_capability": capability})
               for gpu, capability in zip(gpus, capabilities, strict=True)}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpu])
    assert training.half_precision_is_fast() is expected


def test_the_cifar_models_keep_their_softmax_in_float32_under_mixed_precision():
    from common import models

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.cifar_cnn()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"
    assert model(np.zeros((1, 32, 32, 3), np.float32)).dtype == "float32"
