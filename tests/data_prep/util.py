"""Small helpers for data_prep tests: run a build the way the CLI does, decode every record with protobuf."""
from __future__ import annotations

import json
import os

from data_prep import alphabet
from data_prep.build import build, parser
from data_prep.tfrecord import iter_records


def run_build(inputs, out, *extra) -> dict:
    args = parser().parse_args([*map(str, inputs), "--out", str(out), "--quiet", *map(str, extra)])
    return build(args.inputs, args.out, args)


def decode_all(folder) -> dict[str, list[dict]]:
    """Every record of every split, decoded with protobuf (independent of our serializer)."""
    import tensorflow as tf

    m = json.load(open(os.path.join(folder, "manifest.json")))
    out = {}
    for split, info in m["splits"].items():
        rows = []
        for shard in info["shards"]:
            for raw in iter_records(os.path.join(folder, shard["file"]), m.get("compression", "ZLIB")):
                f = tf.train.Example.FromString(raw).features.feature
                row = {"seq": alphabet.decode(bytearray(f["seq"].bytes_list.value[0])),
                       "fold": f["fold"].int64_list.value[0]}
                if "label" in f:
                    row["label"] = f["label"].float_list.value[0]
                if "is_singleton" in f:
                    row["is_singleton"] = f["is_singleton"].int64_list.value[0]
                if "id" in f:
                    row["id"] = f["id"].bytes_list.value[0].decode()
                rows.append(row)
        out[split] = rows
    return out
