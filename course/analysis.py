"""The reference answers to the assignment's questions, derived from a run's measurements.

Solution only: the student handout leaves this folder out. Every claim is decided by
a number of the run (input-wait share, busy seconds per stage, speed-ups, accuracy
differences) against a threshold stated below, and the number is quoted beside it,
so the text cannot contradict the table above it. ``measured`` is the dict of
:func:`common.assignment_check.measurements`.
"""

from __future__ import annotations

import math

from common.assignment_check import steady_wait_share
from common.console import count

# The trainer waited for input at least this share of the epoch: the input sets the pace.
INPUT_BOUND_WAIT = 0.5
# ... at most this share: the model sets the pace (a faster input cannot save more than this).
MODEL_BOUND_WAIT = 0.2
# Two times within this ratio of each other are "about the same" (run-to-run noise on a busy CPU).
SAME_TIME_RATIO = 1.15
# Later epochs at most this share of epoch 1: the cache saved the decoding.
CACHE_GAIN = 0.8
# A test image costs more than this share of a training image (a forward pass is about a third).
TEST_COST_SHARE = 0.6
# Teardown above this share of the run is worth a sentence.
TEARDOWN_SHARE = 0.05
# Accuracy differences within this many standard errors (two binomial estimates on the test set) are noise.
ACCURACY_STANDARD_ERRORS = 2.0

INPUT_STAGES = ("Open", "Read", "Decode", "Map")


def answers(measured: dict) -> dict[str, str]:
    """``{question id: answer}`` for every question of :data:`common.assignment_check.QUESTIONS`."""
    return {"summary": summary(measured), "accuracy": accuracy(measured), "time": time(measured),
            "bottleneck": bottleneck(measured), "tfrecord": tfrecord(measured)}


def _ratio_words(slow: float, fast: float) -> str:
    """'3.1x faster', 'about as fast' or '1.4x slower', for the second of two times against the first."""
    ratio = slow / max(fast, 1e-9)
    if 1 / SAME_TIME_RATIO <= ratio <= SAME_TIME_RATIO:
        return f"about as fast ({ratio:.2f}x)"
    return f"{ratio:.1f}x faster" if ratio > 1 else f"{1 / ratio:.1f}x slower"


def summary(measured: dict) -> str:
    ran = measured["pipelines"]
    described = {
        "naive": "naive reads, decodes and centre-crops one photo at a time in Python, nothing in parallel",
        "augmentation": "augmentation adds a shuffle and a random crop, flip, brightness and contrast per photo, "
                        "still one at a time and unoptimised",
        "optimized": "optimized reads only the file bytes in the source, decodes in a parallel map, caches the "
                     "decoded photos, shuffles, batches, augments a whole batch at once in parallel graph code and "
                     "prefetches",
        "tfrecord": "tfrecord writes the same split once into TFRecord shards with tfrecord_tools, reads them "
                    "back with its loader (batched parsing, parallel decoding, cache) and applies the same batch "
                    "augmentation",
    }
    parts = [described[name] for name in ran if name in described]
    return (f"The same model was trained {len(ran)} times from the same initial weights, for "
            f"{count(measured['epochs'], 'epoch')} on {measured['train_images']:,} training photos "
            f"(tested on {measured['test_images']:,}), "
            f"each time fed by another input pipeline: " + "; ".join(parts) + ". Every run drew a timeline of "
            "where its time went.")


def accuracy(measured: dict) -> str:
    ran = measured["pipelines"]
    epochs = measured["epochs"]
    if "naive" not in ran or "augmentation" not in ran:
        listed = ", ".join(f"{name} {row['test_accuracy']:.3f}" for name, row in ran.items())
        return (f"Without both the naive and the augmentation run there is no like-for-like comparison; the "
                f"test accuracies were {listed} after {count(epochs, 'epoch')}.")
    naive, augmented = ran["naive"]["test_accuracy"], ran["augmentation"]["test_accuracy"]
    change = augmented - naive
    noise = ACCURACY_STANDARD_ERRORS * math.sqrt(
        max(naive * (1 - naive) + augmented * (1 - augmented), 1e-9) / max(measured["test_images"], 1))
    text = (f"Test accuracy went from {naive:.3f} (naive) to {augmented:.3f} with augmentation ({change:+.3f}); "
            f"on {measured['test_images']:,} test photos a difference below about {noise:.3f} "
            f"({ACCURACY_STANDARD_ERRORS:.0f} standard errors) is noise. ")
    if abs(change) <= noise:
        text += (f"So augmentation made no measurable difference in {count(epochs, 'epoch')}. Its random crops, flips "
                 "and lighting changes make the training photos harder and more varied: that pays off when the "
                 "model would otherwise overfit, which takes more epochs than these.")
    elif change < 0:
        text += (f"Augmentation lowered accuracy. Yes, that fits harder training data: every epoch shows new "
                 f"random variants, so in {count(epochs, 'epoch')} the model has not caught up; with more epochs it "
                 "usually overtakes the naive run, which starts to overfit instead.")
    else:
        text += "Augmentation raised accuracy: the varied photos helped the model generalise even in a short run."
    others = {name: row["test_accuracy"] for name, row in ran.items() if name not in ("naive", "augmentation")}
    if others:
        text += (" The optimized runs apply the same augmentation (" + ", ".join(
            f"{name} {value:.3f}" for name, value in others.items()) + "), in another order and with other "
                 "random draws")
        spread = max(abs(value - augmented) for value in others.values())
        one_run_noise = ACCURACY_STANDARD_ERRORS * math.sqrt(
            2 * max(augmented * (1 - augmented), 1e-9) / max(measured["test_images"], 1))
        if spread <= one_run_noise:
            text += ": their accuracies agree with it within the noise."
        else:
            text += (f": one of them differs from it by {spread:.3f}, more than the noise ({one_run_noise:.3f}). "
                     "The same model trained the same way should not differ by that much; on this few test "
                     "photos and epochs a run can still land far from another by chance, so run again (or with "
                     "more epochs) before concluding that a pipeline changes what the model learns.")
    return text


def time(measured: dict) -> str:
    ran = measured["pipelines"]
    sentences = []
    if "naive" in ran and "augmentation" in ran:
        naive, augmented = ran["naive"], ran["augmentation"]
        sentences.append(f"Augmentation took {augmented['seconds']:.1f} s against {naive['seconds']:.1f} s naive "
                         f"({_ratio_words(naive['seconds'], augmented['seconds'])}): its random map runs per "
                         f"photo in Python, and the trainer waited for input {100 * augmented['input_wait_share']:.0f}%"
                         f" of the time (naive {100 * naive['input_wait_share']:.0f}%).")
    baseline = "augmentation" if "augmentation" in ran else "naive" if "naive" in ran else None
    if "optimized" in ran and baseline:
        slow, fast = ran[baseline], ran["optimized"]
        sentences.append(f"The optimized pipeline took {fast['seconds']:.1f} s against {slow['seconds']:.1f} s "
                         f"({baseline}): {_ratio_words(slow['seconds'], fast['seconds'])}; the input wait went from "
                         f"{100 * slow['input_wait_share']:.0f}% to {100 * fast['input_wait_share']:.0f}%.")
        if fast["seconds"] > slow["seconds"] * SAME_TIME_RATIO:
            sentences.append("Here the optimizations cost more than they saved: with so few photos, starting the "
                             "parallel threads and filling the cache is a large share of the run.")
        epochs = fast["epoch_seconds"]
        if len(epochs) > 1:
            later = sum(epochs[1:]) / len(epochs[1:])
            if later <= CACHE_GAIN * epochs[0]:
                sentences.append(f"Epoch 1 took {epochs[0]:.1f} s (every photo decoded once, in parallel with "
                                 f"training), later epochs {later:.1f} s on average: they read decoded photos from "
                                 "the cache.")
            else:
                sentences.append(f"Later epochs ({later:.1f} s on average) were not clearly faster than epoch 1 "
                                 f"({epochs[0]:.1f} s): decoding was not what held epoch 1 up, so the cache saved "
                                 "little.")
        else:
            sentences.append("With a single epoch the cache is filled but never read: run more epochs to see it.")
    if not sentences:
        return "Only one pipeline ran, so there is nothing to compare its time with."
    return " ".join(sentences)


def _input_seconds(row: dict) -> float:
    return sum(row["busy_seconds"].get(stage, 0.0) for stage in INPUT_STAGES)


def bottleneck(measured: dict) -> str:
    ran = measured["pipelines"]
    name = "naive" if "naive" in ran else next(iter(ran))
    row = ran[name]
    wait = row["input_wait_share"]
    busy = row["busy_seconds"]
    train, test = busy.get("Train", 0.0), busy.get("Test", 0.0)
    stages = {stage: busy[stage] for stage in (*INPUT_STAGES, "Train", "Test") if busy.get(stage)}
    biggest = max(stages, key=stages.get) if stages else None
    stage_text = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stages.items())
    if wait >= INPUT_BOUND_WAIT:
        verdict = (f"In the {name} pipeline the input is the bottleneck: the trainer waited for input "
                   f"{100 * wait:.0f}% of the time (at least {100 * INPUT_BOUND_WAIT:.0f}%), so a faster input "
                   "pipeline shortens the run most.")
    elif wait <= MODEL_BOUND_WAIT:
        verdict = (f"In the {name} pipeline the model is the bottleneck: the trainer waited for input only "
                   f"{100 * wait:.0f}% of the time (at most {100 * MODEL_BOUND_WAIT:.0f}%), so even a perfect "
                   f"input pipeline would save at most that share; a faster device or a smaller model would help "
                   "more.")
    else:
        verdict = (f"In the {name} pipeline neither side dominates: the trainer waited for input {100 * wait:.0f}% "
                   f"of the time, so the input and the model each take a large share, and removing the wait could "
                   f"make the run up to {1 / (1 - wait):.1f}x faster.")
    if name in ("naive", "augmentation"):
        verdict += (f" Nothing overlaps there: each photo is read, decoded and mapped while the model waits. Busy "
                    f"time per stage: {stage_text}; the largest is {biggest}.")
    if "optimized" in ran and name != "optimized":
        optimized = ran["optimized"]
        gain = row["seconds"] / max(optimized["seconds"], 1e-9)
        steady = steady_wait_share(optimized)
        if optimized["input_wait_share"] <= MODEL_BOUND_WAIT:
            verdict += (f" With the optimized pipeline the wait fell to {100 * optimized['input_wait_share']:.0f}% "
                        f"and the run was {gain:.1f}x shorter than {name}: there the model's own steps set the pace.")
        elif steady <= MODEL_BOUND_WAIT:
            verdict += (f" The optimized pipeline still waited {100 * optimized['input_wait_share']:.0f}% of the time, "
                        f"but {optimized['startup_wait_seconds']:.1f} s of that was the first batch of each loop "
                        "(the pipeline starting up: threads, the shuffle buffer, the first map call), which "
                        f"prefetching cannot hide; after it the trainer waited only {100 * steady:.0f}%, so in a "
                        "longer run the model sets the pace.")
        else:
            verdict += (f" Even the optimized pipeline waited {100 * steady:.0f}% of the time after each loop's "
                        "first batch: on this machine its input work competes with training for the same cores.")
    surprises = []
    images = max(measured["train_images"], 1)
    test_images = max(measured["test_images"], 1)
    epochs = max(measured["epochs"], 1)
    if train > 0 and test > 0:
        test_per_image = test / (test_images * epochs)
        train_per_image = train / (images * epochs)
        if test_per_image > TEST_COST_SHARE * train_per_image:
            surprises.append(f"a test step cost {1000 * test_per_image:.1f} ms per photo against "
                             f"{1000 * train_per_image:.1f} ms for training, more than the third one expects "
                             "of a forward pass: the test half's input is as slow as the training half's")
    teardowns = {key: item["busy_seconds"].get("Teardown", 0.0) for key, item in ran.items()}
    total = sum(item["seconds"] for item in ran.values())
    if total > 0 and sum(teardowns.values()) > TEARDOWN_SHARE * total:
        surprises.append(f"deleting each epoch's finished iterators (Teardown, outside the epoch times) took "
                         f"{sum(teardowns.values()):.1f} s in all against {total:.1f} s of epochs ("
                         + ", ".join(f"{key} {seconds:.1f} s" for key, seconds in teardowns.items()) + ")")
    if surprises:
        verdict += " Costlier than expected: " + "; ".join(surprises) + "."
    else:
        verdict += " No other step cost more than expected."
    return verdict


def tfrecord(measured: dict) -> str:
    ran = measured["pipelines"]
    tfrecords = measured.get("tfrecords")
    if "tfrecord" not in ran or not tfrecords:
        return "The TFRecord pipeline did not run, so there are no TFRecord numbers to discuss in this run."
    records = ran["tfrecord"]
    cost = tfrecords["seconds"]
    text = (f"Writing {tfrecords['images']:,} photos into {tfrecords['shards']} shards and verifying them took "
            f"{cost:.1f} s: a cost paid once, and again only when the data change.")
    if tfrecords.get("resized"):
        text += (" The records store resized photos, so the TFRecord pipeline decodes fewer pixels than the "
                 "others: its times are not like for like with the image files'.")
    if "optimized" in ran:
        optimized = ran["optimized"]
        first_gain = optimized["epoch_seconds"][0] - records["epoch_seconds"][0]
        text += (f" Epoch 1 took {records['epoch_seconds'][0]:.1f} s from the records against "
                 f"{optimized['epoch_seconds'][0]:.1f} s from the files, the whole run {records['seconds']:.1f} s "
                 f"against {optimized['seconds']:.1f} s: {_ratio_words(optimized['seconds'], records['seconds'])}.")
        if optimized["epoch_seconds"][0] > SAME_TIME_RATIO * records["epoch_seconds"][0]:
            why = ("Decoding photos stored already shrunk, from a few large files instead of many small ones,"
                   if tfrecords.get("resized") else "Reading a few large files instead of many small ones")
            text += (f" {why} saved {first_gain:.1f} s in epoch 1, "
                     f"so the writing pays for itself after about {math.ceil(cost / first_gain)} first epochs "
                     "(later epochs read the cache either way).")
        else:
            text += (" Both pipelines decode every JPEG and then read from the cache, so from a local disk the "
                     "records gain little here; they pay off on slow or network storage and for datasets too "
                     "large to cache.")
    return text
