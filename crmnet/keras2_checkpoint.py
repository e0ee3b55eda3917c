"""Reads a Keras-2 (tf.keras / tf-keras) SavedModel or TF2 checkpoint as layers and their variables.

A Keras-2 SavedModel's ``variables/`` checkpoint stores each variable once, under its shortest
object path, so the weights of nested objects (a subclassed squeeze-excite ``Model``, a transformer
``Layer``) appear only as ``variables/<n>/.ATTRIBUTES/VARIABLE_VALUE``. The key alone says nothing;
the checkpoint's object graph (``_CHECKPOINTABLE_OBJECT_GRAPH``) does: from the root, a functional
model's children ``layer-<i>`` are its ``model.layers`` in order, and below each layer the children
are its attribute names (``excitation_a/kernel``, ``att/_query_dense/kernel``,
``ffn/layer_with_weights-0/kernel``). This module walks that graph, so every variable is identified
by the layer that owns it and its attribute path. Beside the checkpoint, a SavedModel also gives
each variable's Keras-2 name (``saved_model.pb``: ``transformer_block/multi_head_attention/query/kernel``)
and each layer's class, name and inputs (``keras_metadata.pb``); both are used when present.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2, trackable_object_graph_pb2

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_LAYER_RE = re.compile(r"^layer-(\d+)$")
# Children that alias objects reachable elsewhere (flattened variable lists, Keras' serialised
# attributes, traced functions) or hold training state: never a layer's own attribute path.
_ALIASES = frozenset({
    "variables", "trainable_variables", "non_trainable_variables", "weights", "trainable_weights",
    "non_trainable_weights", "regularization_losses", "keras_api", "optimizer", "signatures",
    "save_counter",
})
_IGNORED_PREFIXES = ("optimizer/", "save_counter", OBJECT_GRAPH_KEY, "keras_api/")


def is_ignored_key(key: str) -> bool:
    """Optimizer slots and state, metrics and checkpoint bookkeeping: skipped on purpose."""
    return ".OPTIMIZER_SLOT" in key or key.startswith(_IGNORED_PREFIXES)


@dataclasses.dataclass
class Keras2Variable:
    """One checkpoint variable of a layer.

    ``paths`` are every attribute path from the layer to it (a ``Sequential`` reaches its Dense
    as both ``layer-0`` and ``layer_with_weights-0``); ``name`` is the Keras-2 variable name
    when the SavedModel gives it.
    """

    key: str
    paths: tuple
    shape: tuple
    dtype: tf.DType
    name: str | None = None

    @property
    def path(self) -> str:
        """The shortest attribute path, preferring ``layer_with_weights-<i>`` over ``layer-<i>``."""
        best = min(self.paths, key=lambda p: (len(p), sum(bool(_LAYER_RE.match(c)) for c in p), p))
        return "/".join(best)

    def describe(self, layer=None) -> str:
        where = f"{layer.node}/{self.path}" if layer is not None else self.path
        name = f", Keras-2 name {self.name!r}" if self.name else ""
        return f"{self.key!r} ({where}{name})"


@dataclasses.dataclass
class Keras2Layer:
    """A ``layer-<i>`` of the functional model: its variables and, from keras_metadata.pb, what it is."""

    index: int
    node: str
    variables: list
    node_id: int = -1
    class_name: str | None = None
    name: str | None = None
    inbound: list | None = None  # names of the layers feeding its first call, in argument order

    def title(self) -> str:
        kind = f" {self.class_name} {self.name!r}" if self.class_name else ""
        return f"{self.node}{kind}"


@dataclasses.dataclass
class Keras2Checkpoint:
    """Every key of a checkpoint, sorted into layer variables, skipped keys and strays."""

    source: str
    layers: list
    ignored_keys: list
    stray: list  # Keras2Variable reachable from no layer (paths from the root)
    notes: list
    has_metadata: bool = False

    @property
    def weighted_layers(self):
        return [layer for layer in self.layers if layer.variables]

    def layer_named(self, name):
        return next((layer for layer in self.layers if layer.name == name), None)


def resolve_checkpoint_prefix(path) -> str:
    """The checkpoint prefix for a SavedModel dir, its ``variables/`` dir or a prefix."""
    path = os.fspath(path)
    candidates = []
    if os.path.isdir(path):
        candidates += [os.path.join(path, "variables", "variables"), os.path.join(path, "variables")]
    candidates.append(path)
    for prefix in candidates:
        if os.path.exists(prefix + ".index"):
            return prefix
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
    raise FileNotFoundError(
        f"no TF checkpoint found at {path!r} (looked for " + ", ".join(c + ".index" for c in candidates) + ")"
    )


def _saved_model_dir(prefix):
    """The SavedModel folder around ``<dir>/variables/variables``, if that is where the prefix is."""
    variables_dir = os.path.dirname(prefix)
    if os.path.basename(variables_dir) == "variables":
        directory = os.path.dirname(variables_dir)
        if os.path.isfile(os.path.join(directory, "saved_model.pb")):
            return directory
    return None


def _children(node):
    return [(child.local_name, child.node_id) for child in node.children]


def _variable_key(node):
    return next((a.checkpoint_key for a in node.attributes if a.name == "VARIABLE_VALUE"), None)


def _collect(graph, start):
    """``{node id: [attribute paths]}`` of the variables below ``start``, aliases left out."""
    found, stack = {}, [(start, (), (start,))]
    while stack:
        node_id, path, ancestors = stack.pop()
        node = graph.nodes[node_id]
        if path and _variable_key(node) is not None:
            found.setdefault(node_id, []).append(path)
        for local, child in _children(node):
            if local in _ALIASES or local.startswith(("__", "_default_save", "call_and_return")):
                continue
            if child not in ancestors:
                stack.append((child, path + (local,), ancestors + (child,)))
    return found


def _model_node(graph):
    """The functional model: the root, or the one object below it that holds ``layer-<i>`` children.

    Descends while the current model wraps a single weight-holding layer that is itself a
    functional model (e.g. a preprocessing wrapper around CRMnet).
    """
    def layer_children(node_id):
        return sorted(((int(m.group(1)), child) for local, child in _children(graph.nodes[node_id])
                       if (m := _LAYER_RE.match(local))))

    node, trail = 0, []
    if not layer_children(node):
        holders = [(local, child) for local, child in _children(graph.nodes[0])
                   if local not in _ALIASES and layer_children(child)]
        if len(holders) != 1:
            return None, []
        trail.append(holders[0][0])
        node = holders[0][1]
    while True:
        layers = layer_children(node)
        weighted = [(i, child) for i, child in layers if _collect(graph, child)]
        if len(weighted) == 1 and layer_children(weighted[0][1]) and len(layers) <= 3:
            trail.append(f"layer-{weighted[0][0]}")
            node = weighted[0][1]
            continue
        return node, trail


def _variable_names(directory, graph):
    """``{node id: Keras-2 variable name}`` from saved_model.pb (its object graph numbers nodes alike)."""
    if directory is None:
        return {}
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(directory, "saved_model.pb"), "rb") as handle:
        saved.ParseFromString(handle.read())
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    if len(nodes) != len(graph.nodes) or _children(nodes[0]) != _children(graph.nodes[0]):
        return {}
    return {i: node.variable.name for i, node in enumerate(nodes) if node.WhichOneof("kind") == "variable"}


def _metadata_module():
    try:
        from tf_keras.protobuf import saved_metadata_pb2
    except ImportError:
        try:
            from tensorflow.python.keras.protobuf import saved_metadata_pb2
        except ImportError:
            return None
    return saved_metadata_pb2


def _layer_metadata(directory):
    """``{node path: metadata dict}`` from keras_metadata.pb (``root.layer-3`` ...), or ``None``."""
    if directory is None or not os.path.isfile(os.path.join(directory, "keras_metadata.pb")):
        return None
    module = _metadata_module()
    if module is None:
        return None
    saved = module.SavedMetadata()
    with open(os.path.join(directory, "keras_metadata.pb"), "rb") as handle:
        saved.ParseFromString(handle.read())
    out = {}
    for node in saved.nodes:
        try:
            out[node.node_path] = json.loads(node.metadata)
        except ValueError:
            continue
    return out


def _resolve(graph, path):
    """Node id at a dotted metadata path (``root.layer_with_weights-3.att``), or ``None``."""
    node = 0
    for part in path.split(".")[1:]:
        node = dict(_children(graph.nodes[node])).get(part)
        if node is None:
            return None
    return node


def _inbound_names(metadata):
    nodes = metadata.get("inbound_nodes") or []
    if not nodes or not isinstance(nodes[0], list):
        return None
    return [entry[0] for entry in nodes[0] if isinstance(entry, list) and entry]


def read_keras2_checkpoint(path) -> Keras2Checkpoint:
    """Identifies every variable of a Keras-2 SavedModel (dir, ``variables/`` or prefix) by object path.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: not an object-based (TF2) checkpoint of a functional Keras model.
    """
    prefix = resolve_checkpoint_prefix(path)
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    if OBJECT_GRAPH_KEY not in shapes:
        raise ValueError(f"{prefix}: no {OBJECT_GRAPH_KEY} in the checkpoint; this is a name-based (TF1) "
                         "checkpoint, not a Keras-2 SavedModel's variables/ (an object-based TF2 checkpoint)")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    model_node, trail = _model_node(graph)
    if model_node is None:
        raise ValueError(f"{prefix}: the checkpoint's object graph holds no functional Keras model "
                         "(no 'layer-<i>' children below its root)")
    directory = _saved_model_dir(prefix)
    names = _variable_names(directory, graph)
    metadata = _layer_metadata(directory)
    def variable(node_id, paths):
        key = _variable_key(graph.nodes[node_id])
        return Keras2Variable(key, tuple(sorted(paths)), tuple(int(d) for d in shapes[key]), dtypes[key],
                              names.get(node_id))

    layers, owned = [], set()
    for local, child in _children(graph.nodes[model_node]):
        match = _LAYER_RE.match(local)
        if not match:
            continue
        found = _collect(graph, child)
        layer = Keras2Layer(int(match.group(1)), "/".join(trail + [local]),
                            [variable(node_id, paths) for node_id, paths in sorted(found.items())], child)
        owned.update(v.key for v in layer.variables)
        layers.append(layer)
    layers.sort(key=lambda layer: layer.index)
    notes = []
    if metadata is not None:
        by_node = {layer.node_id: layer for layer in layers}
        for node_path, meta in metadata.items():
            layer = by_node.get(_resolve(graph, node_path))
            if layer is not None:
                layer.class_name, layer.name = meta.get("class_name"), meta.get("name")
                layer.inbound = _inbound_names(meta)
    else:
        notes.append("no readable keras_metadata.pb: layer classes and inputs unknown")

    ignored = [key for key in sorted(shapes) if key not in owned and is_ignored_key(key)]
    loose = [key for key in sorted(shapes) if key not in owned and not is_ignored_key(key)]
    stray = []
    if loose:  # where else the object graph reaches them, for the error message
        node_of = {_variable_key(graph.nodes[n]): n for n in range(len(graph.nodes))}
        everything = _collect(graph, 0)
        for key in loose:
            node_id = node_of.get(key)
            stray.append(Keras2Variable(key, tuple(everything.get(node_id) or [(key,)]),
                                        tuple(int(d) for d in shapes[key]), dtypes[key], names.get(node_id)))
    return Keras2Checkpoint(prefix, layers, ignored, stray, notes, has_metadata=metadata is not None)
