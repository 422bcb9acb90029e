"""lab03 with --strategy multi-worker: two local worker processes, killed in training and restarted.

One sequence shared by every assertion (TensorFlow starts in ~5 s per process, two
processes per round): both workers start, both are killed (SIGKILL) in part two's
second epoch, both are restarted with the same command and run to the end.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 2
FLAGS = ["--data", "standin", "--limit", "256", "--epochs", str(EPOCHS), "--strategy", "multi-worker",
         "--no-mixed-precision"]
ROUND_TIMEOUT = 150


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def start_workers(outs, ports, logs):
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index, (out, log) in enumerate(zip(outs, logs, strict=True)):
        environment = {**os.environ, "PYTHONUNBUFFERED": "1",  # the log shows each line at once
                       "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, "lab03_cifar_cnn.py", *FLAGS, "--out", str(out)], cwd=REPO_ROOT, env=environment,
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True))
    return processes


def stop(processes):
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiworker")
    outs = [root / "chief_out", root / "worker_out"]
    first_logs = [root / "chief_1.log", root / "worker_1.log"]
    processes = start_workers(outs, free_ports(2), first_logs)
    try:
        deadline = time.monotonic() + ROUND_TIMEOUT
        # Kill both in part two's second epoch: part one is finished, part two has a checkpoint.
        while "Epoch 1/" not in first_logs[0].read_text().partition("Part two")[2]:
            assert all(process.poll() is None for process in processes), first_logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "part two's first epoch did not end in time"
            time.sleep(0.1)
    finally:
        stop(processes)
    interrupted = json.loads((outs[0] / "metrics.json").read_text())
    # A kill can fall between the chief's and the other worker's end of a part: make it so.
    worker_folder = Path(first_logs[1].read_text().split("outputs and checkpoints go to ")[1].split()[0])
    worker_state = json.loads((worker_folder / "run.json").read_text())
    del worker_state["parts"]["arrays"]
    (worker_folder / "run.json").write_text(json.dumps(worker_state))

    second_logs = [root / "chief_2.log", root / "worker_2.log"]
    processes = start_workers(outs, free_ports(2), second_logs)
    try:
        codes = [process.wait(timeout=ROUND_TIMEOUT) for process in processes]
    finally:
        stop(processes)
    return {"outs": outs, "interrupted": interrupted, "codes": codes, "worker_folder": worker_folder,
            "logs": [log.read_text() for log in second_logs]}


@pytest.mark.slow
def test_two_workers_exit_0_and_only_the_chief_writes(cluster_run):
    chief_out, worker_out = cluster_run["outs"]
    assert cluster_run["codes"] == [0, 0], cluster_run["logs"][0][-3000:] + cluster_run["logs"][1][-3000:]
    metrics = json.loads((chief_out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert metrics["settings"]["replicas"] == 2 and metrics["settings"]["workers"] == 2
    assert metrics["settings"]["arrays_global_batch_size"] == 2 * 32
    for name in ["cifar_cnn.keras", "cifar_cnn_pipeline.keras", "confusion_matrix_arrays.png",
                 "confusion_matrix_pipeline.png", "predictions.png", "training_curves.png", "augmented_images.png"]:
        assert (chief_out / name).stat().st_size > 1000, name
    assert not worker_out.exists() or not any(worker_out.iterdir())
    assert "not the chief worker" in cluster_run["logs"][1]


@pytest.mark.slow
def test_workers_hold_identical_weights_and_evaluate_the_whole_test_set(cluster_run):
    checksums = [[line.split()[2] for line in log.splitlines() if line.startswith("weights checksum")]
                 for log in cluster_run["logs"]]
    assert checksums[0] and checksums[0] == checksums[1]
    metrics = json.loads((Path(cluster_run["outs"][0]) / "metrics.json").read_text())
    # Keras' predict under the strategy would return this worker's half only.
    for model, data in (("arrays_model", "data"), ("pipeline_model", "pipeline_data")):
        assert metrics[model]["test_images_predicted"] == metrics[data]["test_images"] > 0


@pytest.mark.slow
def test_killed_workers_restarted_together_go_on_from_the_checkpoint(cluster_run):
    assert cluster_run["interrupted"]["status"] == "running"  # killed: nothing could mark it
    assert cluster_run["interrupted"]["finished_parts"] == ["arrays"]
    chief_log, worker_log = cluster_run["logs"]
    # Part one had finished on the chief only: both run it again from its last checkpoint.
    assert "arrays: not finished on every worker: running it again from its checkpoints" in chief_log
    assert chief_log.count(f"restored the checkpoint of epoch {EPOCHS}") == 1
    assert worker_log.count(f"restored the checkpoint of epoch {EPOCHS}") == 1
    assert "restored the checkpoint of epoch 1" in chief_log and "restored the checkpoint of epoch 1" in worker_log
    metrics = json.loads((Path(cluster_run["outs"][0]) / "metrics.json").read_text())
    assert metrics["arrays_model"]["epochs_trained_now"] == 0
    assert metrics["pipeline_model"]["epochs_trained_now"] == EPOCHS - 1
    for model in ("arrays_model", "pipeline_model"):
        assert len(metrics[model]["history"]["val_accuracy"]) == EPOCHS
        assert len(metrics[model]["train_seconds_per_epoch"]) == EPOCHS
    assert not cluster_run["worker_folder"].exists()  # the other worker cleaned up after itself
