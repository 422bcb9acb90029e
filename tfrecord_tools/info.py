"""Describe a written dataset from its sidecar: counts per class and split, sizes, what was rejected."""

import os

from .errors import printable
from .sidecar import read_sidecar


def dataset_info(out):
    """Counts, classes and sizes of a written dataset, from its sidecar.

    Returns
    -------
    dict
        ``classes``, ``splits`` (per split: ``images``, ``bytes``, ``shards``,
        ``class_counts``, ``image_size``), ``totals``, ``rejected_by_category``,
        ``reencoded_by_source`` and ``duplicates``.
    """
    sidecar = read_sidecar(out)
    return {
        "out": os.path.abspath(os.fspath(out)),
        "classes": sidecar["classes"],
        "splits": {
            name: {
                "images": split["images"],
                "bytes": split["bytes"],
                "shards": len(split["shards"]),
                "class_counts": split["class_counts"],
                "image_size": split.get("image_size"),
            }
            for name, split in sidecar["splits"].items()
        },
        "totals": sidecar.get("totals", {}),
        "rejected_by_category": sidecar.get("rejected_by_category", {}),
        "reencoded_by_source": sidecar.get("reencoded_by_source", {}),
        "duplicates": sidecar.get("duplicates", {}),
        "seed": sidecar.get("seed"),
        "tool_version": sidecar.get("tool_version"),
        "resize": sidecar.get("resize"),
        "warnings": sidecar.get("warnings", []),
    }


def format_info(info):
    """A fixed-width table: one row per class, one column per split."""
    splits = list(info["splits"])
    names = [printable(name) for name in info["classes"]]  # a name may hold escape sequences, or bytes not UTF-8
    width = max([len("class")] + [len(name) for name in names])
    lines = [f"{printable(info['out'])}  (tool {info['tool_version']}, seed {info['seed']})"]
    header = f"{'label':>5}  {'class':<{width}}" + "".join(f"  {name:>10}" for name in splits)
    lines += [header, "-" * len(header)]
    for label, (name, shown) in enumerate(zip(info["classes"], names, strict=True)):
        counts = "".join(f"  {info['splits'][split]['class_counts'].get(name, 0):>10,}" for split in splits)
        lines.append(f"{label:>5}  {shown:<{width}}" + counts)
    lines.append("-" * len(header))
    lines.append(f"{'':>5}  {'images':<{width}}" + "".join(f"  {info['splits'][s]['images']:>10,}" for s in splits))
    lines.append(f"{'':>5}  {'shards':<{width}}" + "".join(f"  {info['splits'][s]['shards']:>10,}" for s in splits))
    lines.append(
        f"{'':>5}  {'MB':<{width}}" + "".join(f"  {info['splits'][s]['bytes'] / 1e6:>10.1f}" for s in splits)
    )
    for split in splits:
        size = info["splits"][split]["image_size"]
        if size:
            lines.append(
                f"{split}: image height {size['min_height']}-{size['max_height']}, "
                f"width {size['min_width']}-{size['max_width']} px"
            )
    totals = info["totals"]
    lines.append(
        f"rejected: {totals.get('rejected', 0):,} {info['rejected_by_category'] or ''}".rstrip()
        + f"; re-encoded to JPEG: {totals.get('reencoded', 0):,} {info['reencoded_by_source'] or ''}".rstrip()
    )
    resize = info.get("resize")
    if isinstance(resize, dict):
        lines.append(f"stored resized: longer side at most {resize.get('max_side')} px, JPEG quality "
                     f"{resize.get('jpeg_quality')} ({resize.get('resized_images', '?')} image(s) resized)")
    duplicates = info["duplicates"].get("across_splits_count", 0)
    if duplicates:
        lines.append(f"warning: {duplicates} image(s) appear in more than one split")
    conflicting = info["duplicates"].get("conflicting_labels_count", 0)
    if conflicting:
        lines.append(f"warning: {conflicting} image(s) are stored under two or more classes (see dataset.json)")
    lines.extend(f"warning: {printable(warning)}" for warning in info.get("warnings") or [])
    return "\n".join(lines)
