"""distributed_cifar_cnn.py: mirrored on two logical CPUs, and two local multi-worker processes killed and restarted.

One multi-worker sequence is shared by every multi-worker assertion (TensorFlow starts
in ~5 s per process, two processes per round): both workers start, both are killed
(SIGKILL) after the first epoch's checkpoint, both are restarted with the same command
and run to the end.
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

from fakes import REPO_ROOT

SCRIPT = "distributed_cifar_cnn.py"
EPOCHS = 2
FLAGS = ["--data", "standin", "--limit", "256", "--epochs", str(EPOCHS), "--batch-size", "32"]
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
            [sys.executable, SCRIPT, *FLAGS, "--strategy", "multi-worker", "--out", str(out)], cwd=REPO_ROOT,
            env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True))
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
        # Kill both once the first epoch's checkpoint is written (its line comes after the save).
        while not all(f"Epoch 1/{EPOCHS}" in log.read_text() for log in first_logs):
            assert all(process.poll() is None for process in processes), first_logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "the first epoch did not end in time"
            time.sleep(0.1)
    finally:
        stop(processes)
    interrupted = json.loads((outs[0] / "metrics.json").read_text())
    worker_folder = Path(first_logs[1].read_text().split("outputs and checkpoints go to ")[1].split()[0])

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
    for name in ["confusion_matrix.png", "training_curves.png", "epochs_cnn.csv"]:
        assert (chief_out / name).stat().st_size > 100, name
    assert not worker_out.exists() or not any(worker_out.iterdir())
    assert "not the chief worker" in cluster_run["logs"][1]
    assert "2 replica(s) in 2 worker(s)" in cluster_run["logs"][0]


@pytest.mark.slow
def test_workers_hold_identical_weights_and_evaluate_the_whole_test_set(cluster_run):
    checksums = [[line.split()[2] for line in log.splitlines() if line.startswith("weights checksum")]
                 for log in cluster_run["logs"]]
    assert checksums[0] and checksums[0] == checksums[1]
    metrics = json.loads((Path(cluster_run["outs"][0]) / "metrics.json").read_text())
    # Keras' predict under the strategy would return this worker's half only.
    assert metrics["test_images_predicted"] == metrics["data"]["test_images"] > 0


@pytest.mark.slow
def test_killed_workers_restarted_together_go_on_from_the_checkpoint(cluster_run):
    assert cluster_run["interrupted"]["status"] == "running"  # killed: nothing could mark it
    chief_log, worker_log = cluster_run["logs"]
    assert "restored the checkpoint of epoch 1" in chief_log and "restored the checkpoint of epoch 1" in worker_log
    assert f"Epoch 1/{EPOCHS}" not in chief_log and f"Epoch 2/{EPOCHS}" in chief_log  # no epoch trained twice
    metrics = json.loads((Path(cluster_run["outs"][0]) / "metrics.json").read_text())
    assert metrics["epochs_trained_now"] == EPOCHS - 1
    assert len(metrics["history"]["val_accuracy"]) == EPOCHS
    assert not cluster_run["worker_folder"].exists()  # the other worker cleaned up after itself


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_splits_the_global_batch(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, *FLAGS, "--strategy", "mirrored", "--cpu-devices", "2",
                             "--out", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "strategy mirrored: 2 replica(s) on /job:localhost/replica:0/task:0/device:CPU:0, " in result.stdout
    assert "global batch 32, 16 per replica" in result.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["settings"]["replicas"] == 2 and len(metrics["history"]["loss"]) == EPOCHS
    bad = subprocess.run([sys.executable, SCRIPT, *FLAGS, "--strategy", "mirrored", "--cpu-devices", "2",
                          "--batch-size", "33", "--limit", "300", "--out", str(tmp_path / "bad")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not split evenly across 2 replicas" in bad.stderr
