"""What a ``tf.data`` pipeline is made of, read from its own serialized graph: no clock involved.

``tf.raw_ops.DatasetToGraphV2`` serializes a dataset into a ``GraphDef``: one node
per transformation (``TensorSliceDataset``, ``CacheDatasetV2``,
``ParallelMapDatasetV2``, ``BatchDatasetV2``, ``PrefetchDataset``, ...) whose first
input is the dataset it transforms, and a function library holding each map's
body. :func:`pipeline_structure` walks the inputs back from the output and answers
what the rubric asks: is there a parallel map or interleave, a cache before the
random map, a prefetch at the end, a batch before the vectorised map.

The random map is found by a random op inside its function (recursively through
the functions it calls), not by its position. A map that runs Python
(``tf.py_function``) cannot be looked into; it counts as a map, not a random one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Random ops, by name in a FunctionDef (stateful, stateless and the image ops built on them).
RANDOM_OPS = ("Random", "Multinomial", "RandomShuffle", "StatelessRandom", "StatelessTruncatedNormal",
              "StatefulUniform", "StatefulStandardNormal", "StatefulTruncatedNormal", "RngReadAndSkip",
              "RngSkip", "SampleDistortedBoundingBox")
# Dataset ops that only pass data through (options, threading, model tuning): skipped at the output end.
PASS_THROUGH = ("OptionsDataset", "ModelDataset", "MaxIntraOpParallelismDataset", "PrivateThreadPoolDataset",
                "AssertCardinalityDataset", "OptimizeDatasetV2", "OptimizeDataset")
MAP_OPS = ("MapDataset", "ParallelMapDataset", "ParallelMapDatasetV2", "MapAndBatchDataset")
PARALLEL_OPS = {"ParallelMapDataset": "num_parallel_calls", "ParallelMapDatasetV2": "num_parallel_calls",
                "ParallelInterleaveDatasetV2": "num_parallel_calls", "ParallelInterleaveDatasetV3":
                "num_parallel_calls", "ParallelInterleaveDatasetV4": "num_parallel_calls",
                "ParallelBatchDataset": "num_parallel_calls", "MapAndBatchDataset": "num_parallel_calls"}
AUTOTUNE = -1


@dataclass
class Stage:
    """One transformation of a pipeline, from the output backwards."""

    op: str
    name: str
    random: bool = False  # a map whose function draws random numbers
    parallel_calls: int | None = None  # None: not a parallel op; -1: AUTOTUNE
    python: bool = False  # a map whose function calls back into Python (py_function)


@dataclass
class Structure:
    """A pipeline's transformations and the rubric's questions about them.

    ``chain`` lists the main line from the output back to the source (first inputs
    only); ``ancestors`` maps each stage name to the ops of everything upstream of
    it, captured datasets included (a ``flat_map`` that closes over another dataset).
    """

    chain: list[Stage] = field(default_factory=list)
    ancestors: dict[str, set[str]] = field(default_factory=dict)

    @property
    def ops(self) -> list[str]:
        """The chain's ops, from the source to the output (read like the Python that built it)."""
        return [stage.op for stage in reversed(self.chain)]

    @property
    def random_map(self) -> Stage | None:
        """The random map nearest the output, if any."""
        return next((stage for stage in self.chain if stage.random), None)

    @property
    def prefetch_at_end(self) -> bool:
        return bool(self.chain) and self.chain[0].op == "PrefetchDataset"

    @property
    def parallel(self) -> bool:
        """A map or interleave with more than one parallel call, or AUTOTUNE, anywhere upstream."""
        every = [stage for stage in self.chain if stage.parallel_calls is not None]
        every += [stage for stage in self._all_stages if stage.parallel_calls is not None]
        return any(stage.parallel_calls == AUTOTUNE or stage.parallel_calls > 1 for stage in every)

    def upstream_of_random_map(self, op: str) -> bool:
        """Whether ``op`` (e.g. ``CacheDatasetV2``) comes before the random map."""
        stage = self.random_map
        return stage is not None and any(name.startswith(op) for name in self.ancestors.get(stage.name, set()))

    @property
    def batch_before_random_map(self) -> bool:
        stage = self.random_map
        if stage is None:
            return False
        if stage.op == "MapAndBatchDataset":
            return False  # the map runs per element, then batches
        return any(name.startswith(("BatchDataset", "PaddedBatchDataset", "ParallelBatchDataset"))
                   for name in self.ancestors.get(stage.name, set()))

    _all_stages: list[Stage] = field(default_factory=list)


def pipeline_structure(dataset) -> Structure:
    """The :class:`Structure` of a ``tf.data.Dataset``, from its serialized graph.

    Datasets whose state cannot be serialized (a ``from_generator`` source, a
    ``tf.py_function`` map) are serialized with the external-state policy set to
    warn: their structure is still complete.
    """
    import tensorflow as tf

    graph_bytes = tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor,  # noqa: SLF001
                                              external_state_policy=0, strip_device_assignment=True)
    graph = tf.compat.v1.GraphDef.FromString(graph_bytes.numpy())
    nodes = {node.name: node for node in graph.node}
    functions = {function.signature.name: function for function in graph.library.function}
    output = next(node for node in graph.node if node.op == "_Retval")

    def source(name: str) -> str:
        return name.split(":")[0].lstrip("^")

    def constant(name: str) -> int | None:
        node = nodes.get(source(name))
        if node is None or node.op != "Const":
            return None
        tensor = node.attr["value"].tensor
        values = list(tensor.int64_val) or list(tensor.int_val)
        return int(values[0]) if values else None

    def function_ops(function_name: str, seen: set[str]) -> set[str]:
        if function_name in seen or function_name not in functions:
            return set()
        seen.add(function_name)
        found = set()
        for node in functions[function_name].node_def:
            found.add(node.op)
            for value in node.attr.values():
                if value.func.name:
                    found |= function_ops(value.func.name, seen)
                for listed in value.list.func:
                    found |= function_ops(listed.name, seen)
        return found

    def stage_of(node) -> Stage:
        stage = Stage(node.op, node.name)
        called = set()
        for value in node.attr.values():
            if value.func.name:
                called |= function_ops(value.func.name, set())
        if node.op in MAP_OPS:
            stage.random = any(op.startswith(RANDOM_OPS) for op in called)
            stage.python = any(op in ("EagerPyFunc", "PyFunc", "PyFuncStateless") for op in called)
        if node.op in PARALLEL_OPS:
            # num_parallel_calls is the dataset op's last data input (a constant).
            inputs = [name for name in node.input if not name.startswith("^")]
            stage.parallel_calls = constant(inputs[-1]) if inputs else None
        return stage

    ancestors: dict[str, set[str]] = {}

    def upstream(name: str) -> set[str]:
        if name in ancestors:
            return ancestors[name]
        ancestors[name] = set()
        found = set()
        for parent in nodes[name].input:
            parent = source(parent)
            if parent in nodes and "Dataset" in nodes[parent].op:
                found.add(parent)
                found |= upstream(parent)
        ancestors[name] = found
        return found

    structure = Structure()
    current = source(output.input[0])
    while current in nodes and "Dataset" in nodes[current].op:
        node = nodes[current]
        if not (node.op in PASS_THROUGH and not structure.chain):
            structure.chain.append(stage_of(node))
        upstream(current)
        data_inputs = [source(name) for name in node.input if not name.startswith("^")]
        current = data_inputs[0] if data_inputs else ""
    structure.ancestors = {name: {nodes[parent].op + "/" + parent for parent in parents}
                           for name, parents in ancestors.items()}
    structure._all_stages = [stage_of(nodes[name]) for name in ancestors if nodes[name].op in PARALLEL_OPS]
    return structure
