"""common.distribute: strategies by name, the plain training loop with checkpoints, evaluation on one worker.

The two-worker runs (killed and restarted) are in tests/scripts/test_distributed.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import distribute
from common.errors import UserError
from common.run import read_epoch_log


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def small_problem(count=96):
    rng = np.random.default_rng(0)
    images = rng.random((count, 4), dtype=np.float32)
    labels = (images.sum(axis=1) > 2).astype("int64")
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)


def compiled_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_one_device_strategy_and_unknown_names():
    strategy = distribute.make_strategy("one-device")
    assert strategy.num_replicas_in_sync == 1 and distribute.workers(strategy) == 1
    assert distribute.describe(strategy).startswith("1 replica(s) on ") and "CPU:0" in distribute.describe(strategy)
    with pytest.raises(UserError, match="expected one of"):
        distribute.make_strategy("parameter-server")
    with pytest.raises(UserError, match="--cpu-devices"):
        distribute.make_strategy("multi-worker", cpu_devices=2)


def test_the_loop_matches_fit_step_for_step(tmp_path):
    dataset = small_problem()
    keras.utils.set_random_seed(1)
    fitted = compiled_model()
    strategy = distribute.make_strategy("one-device")
    with strategy.scope():
        looped = compiled_model()
    looped.set_weights(fitted.get_weights())
    history = fitted.fit(dataset, epochs=2, verbose=0, shuffle=False, validation_data=dataset).history
    trained = distribute.train(looped, dataset, strategy=strategy, epochs=2, validation_data=dataset,
                               checkpoint_dir=tmp_path / "checkpoints", log=tmp_path / "epochs.csv")
    assert trained == 2
    for fitted_weight, looped_weight in zip(fitted.get_weights(), looped.get_weights(), strict=True):
        np.testing.assert_allclose(looped_weight, fitted_weight, rtol=1e-4, atol=1e-5)
    logged = read_epoch_log(tmp_path / "epochs.csv")
    assert set(logged) == {"loss", "accuracy", "val_loss", "val_accuracy", "train_seconds", "validation_seconds"}
    np.testing.assert_allclose(logged["val_loss"], history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(logged["val_accuracy"], history["val_accuracy"])


def test_the_loop_resumes_from_its_checkpoint(tmp_path):
    dataset = small_problem()
    strategy = distribute.make_strategy("one-device")
    with strategy.scope():
        first = compiled_model()
    distribute.train(first, dataset, strategy=strategy, epochs=2, validation_data=dataset,
                     checkpoint_dir=tmp_path / "checkpoints", log=tmp_path / "epochs.csv")
    with strategy.scope():
        second = compiled_model()  # a new process would build the model afresh
    trained = distribute.train(second, dataset, strategy=strategy, epochs=3, validation_data=dataset,
                               checkpoint_dir=tmp_path / "checkpoints", log=tmp_path / "epochs.csv")
    assert trained == 1 and len(read_epoch_log(tmp_path / "epochs.csv")["loss"]) == 3
    # Epoch 3 went on from epoch 2's weights and optimizer state, not from scratch.
    assert int(second.optimizer.iterations.numpy()) == 3 * 3
    assert distribute.weights_checksum(first) != distribute.weights_checksum(second)
    evaluated = distribute.evaluate(second, dataset)
    assert len(evaluated["predicted"]) == 96
    expected = second.evaluate(dataset, verbose=0, return_dict=True)
    assert evaluated["accuracy"] == pytest.approx(expected["accuracy"])
    assert evaluated["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def test_the_loop_under_mixed_float16_scales_the_loss(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")  # the GPU path, on the CPU
    strategy = distribute.make_strategy("one-device")
    with strategy.scope():
        model = compiled_model()
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    distribute.train(model, small_problem(), strategy=strategy, epochs=1, checkpoint_dir=tmp_path / "c",
                     log=tmp_path / "epochs.csv")
    assert np.isfinite(read_epoch_log(tmp_path / "epochs.csv")["loss"][0])
    assert model.layers[0].compute_dtype == "float16"


def test_weights_checksum_changes_with_any_weight():
    model = compiled_model()
    before = distribute.weights_checksum(model)
    weights = model.get_weights()
    weights[-1] = weights[-1] + 1e-6
    model.set_weights(weights)
    assert distribute.weights_checksum(model) != before
