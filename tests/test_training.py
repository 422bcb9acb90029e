"""common.training: epoch timing, strategies, precision policy, chief detection."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import training
from common.errors import UserError


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def test_epoch_timer_records_every_epoch_and_keeps_validation_apart():
    inputs = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    labels = np.arange(64) % 3
    model = tiny_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = training.EpochTimer(images_per_epoch=64)
    history = model.fit(inputs, labels, batch_size=16, epochs=3, validation_data=(inputs, labels),
                        callbacks=[timer], verbose=0)
    summary = timer.summary()
    assert len(timer.train_seconds) == len(timer.validation_seconds) == 3
    assert all(seconds > 0 for seconds in timer.train_seconds + timer.validation_seconds)
    assert summary["images_per_second"] > 0
    # The steady-state mean leaves the first (tracing) epoch out.
    assert summary["seconds_per_epoch"] == pytest.approx(np.mean(timer.train_seconds[1:]), abs=0.01)
    table = training.epoch_table(history.history, timer).splitlines()
    assert len(table) == 2 + 3 and table[0].split()[0] == "epoch"


def test_one_device_strategy_trains_on_the_cpu():
    strategy = training.distribution_strategy("one-device")
    assert strategy.num_replicas_in_sync == 1
    assert training.strategy_devices(strategy)[0].endswith("CPU:0")
    with strategy.scope():
        model = tiny_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((8, 4), np.float32), np.zeros(8, np.int64))).batch(4)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_default_strategy_and_unknown_name():
    assert training.distribution_strategy("default").num_replicas_in_sync == 1
    assert len(training.strategy_devices(training.distribution_strategy("default"))) == 1
    with pytest.raises(UserError, match="expected one of"):
        training.distribution_strategy("parameter-server")


@pytest.mark.parametrize(("precision", "expected"), [("float32", "float32"), ("mixed", "mixed_bfloat16")])
def test_set_precision_on_cpu(precision, expected):
    assert training.set_precision(precision) == expected
    assert keras.mixed_precision.global_policy().name == expected


def test_float32_output_keeps_the_softmax_in_float32_under_mixed_precision():
    training.set_precision("mixed")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(3, activation="softmax")])
    model = training.float32_output(model)
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model(np.ones((2, 4), np.float32)).dtype == "float32"


def test_native_bfloat16_is_read_from_cpu_flags(tmp_path):
    with_flag = tmp_path / "with"
    with_flag.write_text("flags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    without_flag = tmp_path / "without"
    without_flag.write_text("flags\t\t: fpu sse avx2\n")
    assert training.cpu_has_native_bfloat16(with_flag)
    assert not training.cpu_has_native_bfloat16(without_flag)
    assert not training.cpu_has_native_bfloat16(tmp_path / "missing")


@pytest.mark.parametrize(("tf_config", "chief"), [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_is_chief_reads_tf_config(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert training.is_chief() is chief


def test_save_model_writes_a_loadable_keras_file_and_no_leftovers(tmp_path):
    model = tiny_model()
    path = training.save_model(model, tmp_path / "tiny.keras")
    assert [entry.name for entry in tmp_path.iterdir()] == ["tiny.keras"]
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(np.ones((1, 4), np.float32)), model(np.ones((1, 4), np.float32)))


def test_starting_weights_are_saved_once_and_a_resumed_run_starts_from_the_interrupted_runs(tmp_path):
    class FakeRun:
        def __init__(self, resumed_parts):
            self.resumed_parts = resumed_parts

        def path(self, name):
            return tmp_path / name

    first = tiny_model()
    path = training.starting_weights(first, FakeRun([]))
    assert [entry.name for entry in tmp_path.iterdir()] == ["initial.weights.h5"]
    resumed = tiny_model()  # other random weights, as after a restart
    assert training.weights_checksum(resumed) != training.weights_checksum(first)
    assert training.starting_weights(resumed, FakeRun(["naive"])) == path
    assert training.weights_checksum(resumed) == training.weights_checksum(first)
    new_run = tiny_model()  # not a resume: its own weights replace the file
    training.starting_weights(new_run, FakeRun([]))
    first.load_weights(path)
    assert training.weights_checksum(first) == training.weights_checksum(new_run)
    assert [entry.name for entry in tmp_path.iterdir()] == ["initial.weights.h5"]


@pytest.mark.parametrize(("examples", "replicas", "expected"), [
    (10_000, 1, 500), (51, 1, 51), (10_000, 2, 1000), (51, 2, 48), (50, 2, 50), (101, 4, 96),
])
def test_evaluation_batch_size_splits_every_batch_across_the_replicas(examples, replicas, expected):
    batch = training.evaluation_batch_size(examples, replicas)
    assert batch == expected
    if replicas > 1:
        assert batch % replicas == 0 and min(batch, examples) % replicas == 0
        assert examples % batch == 0 or examples % batch >= replicas


@pytest.mark.parametrize("capabilities, expected", [
    ([(8, 0)], True), ([(7, 0), (7, 5)], True), ([(6, 1)], False), ([(8, 6), (6, 0)], False), ([None], False),
])
def test_mixed_precision_on_gpus_only_with_tensor_cores(monkeypatch, capabilities, expected):
    details = {f"GPU:{index}": ({} if capability is None else {"compute_capability": capability})
               for index, capability in enumerate(capabilities)}
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpu])
    assert training.gpus_have_tensor_cores(list(details)) is expected


def test_fit_resumable_goes_on_from_the_last_epoch_and_keeps_every_epoch(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((64, 4), dtype=np.float32)
    y = (x.sum(axis=1) > 2).astype("int32")

    def build():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit_resumable(build(), x, y, backup_dir=tmp_path, epochs=4, timer=training.EpochTimer(64),
                               callbacks=[StopAfterSecondEpoch()], verbose=0, validation_data=(x, y))
    timer = training.EpochTimer(64)
    result = training.fit_resumable(build(), x, y, backup_dir=tmp_path, epochs=4, timer=timer, verbose=0,
                                    validation_data=(x, y))
    assert result.resumed_from == 1 and result.epochs_trained == 3
    assert {key: len(values) for key, values in result.history.items()} == \
        {"loss": 4, "accuracy": 4, "val_loss": 4, "val_accuracy": 4}
    assert len(timer.train_seconds) == 4

    # Interrupted after the last epoch (while the script predicted or saved): nothing is trained again.
    model = build()
    again = training.fit_resumable(model, x, y, backup_dir=tmp_path, epochs=4, timer=training.EpochTimer(64),
                                   verbose=0, validation_data=(x, y))
    assert again.epochs_trained == 0 and again.history == result.history
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0)[0], result.history["val_loss"][-1], rtol=1e-5)


def small_problem(count=96):
    rng = np.random.default_rng(0)
    images = rng.random((count, 4), dtype=np.float32)
    labels = (images.sum(axis=1) > 2).astype("int64")
    return images, labels


def compiled_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_fit_loop_matches_fit_step_for_step(tmp_path):
    images, labels = small_problem()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    keras.utils.set_random_seed(1)
    fitted = compiled_model()
    keras.utils.set_random_seed(1)
    looped = compiled_model()
    looped.set_weights(fitted.get_weights())
    history = fitted.fit(dataset, epochs=2, verbose=0, shuffle=False, validation_data=dataset)
    timer = training.EpochTimer(images_per_epoch=96)
    result = training.fit_loop(looped, dataset, epochs=2, checkpoint_dir=tmp_path, validation_data=dataset,
                               timer=timer, verbose=0)
    for fitted_weight, looped_weight in zip(fitted.get_weights(), looped.get_weights(), strict=True):
        np.testing.assert_allclose(looped_weight, fitted_weight, rtol=1e-4, atol=1e-5)
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    np.testing.assert_allclose(result.history["val_loss"], history.history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(result.history["val_accuracy"], history.history["val_accuracy"])
    assert len(timer.train_seconds) == 2 and timer.summary()["images_per_second"] > 0


def test_fit_loop_resumes_from_its_checkpoint_and_keeps_every_epoch(tmp_path):
    images, labels = small_problem()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    first = compiled_model()
    training.fit_loop(first, dataset, epochs=2, checkpoint_dir=tmp_path, validation_data=dataset, verbose=0)
    second = compiled_model()  # a new process would build the model afresh
    result = training.fit_loop(second, dataset, epochs=3, checkpoint_dir=tmp_path, validation_data=dataset,
                               verbose=0)
    assert result.resumed_from == 2 and result.epochs_trained == 1
    assert len(result.history["loss"]) == 3
    # Epoch 3 went on from epoch 2's weights and optimizer state, not from scratch.
    assert int(second.optimizer.iterations.numpy()) == 3 * 3
    assert training.weights_checksum(first) != training.weights_checksum(second)
    assert len(training.predict_classes(second, dataset)) == 96
    assert 0.0 <= training.evaluate_accuracy(second, dataset) <= 1.0


def test_fit_loop_under_mixed_float16_scales_the_loss(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")  # the GPU path, on the CPU
    images, labels = small_problem()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    model = training.float32_output(compiled_model())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    result = training.fit_loop(model, dataset, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    assert np.isfinite(result.history["loss"][0])
    assert model.layers[0].compute_dtype == "float16"


def test_setup_builds_strategy_and_precision_in_one_call():
    chosen = training.setup("default", precision=False, seed=3)
    assert chosen.replicas == 1 and chosen.dtype_policy == "float32" and chosen.workers == 1
    assert "1 replica(s) on" in chosen.describe() and not chosen.multi_worker
    with pytest.raises(UserError, match="--cpu-devices"):
        training.setup("multi-worker", cpu_devices=2)
