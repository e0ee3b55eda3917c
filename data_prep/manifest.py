"""manifest.json: what a dataset folder holds, and the checks run before anything trusts it."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from data_prep.errors import Seq2ExpError
from data_prep.schema import RecordSchema
from data_prep.tfrecord import COMPRESSIONS

MANIFEST = "manifest.json"
FORMAT = "seq2exp-tfrecord"


class ManifestError(Seq2ExpError, ValueError):
    """The dataset folder is missing, inconsistent or not what the caller expects; names the file."""


def write_manifest(folder: str, data: dict) -> str:
    path = os.path.join(folder, MANIFEST)
    tmp = path + ".partial"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    folder: str
    data: dict

    @property
    def path(self) -> str:
        return os.path.join(self.folder, MANIFEST)

    @property
    def layout(self) -> str:
        return self.data["layout"]

    @property
    def length(self) -> int:
        return int(self.data["schema"]["length"])

    @property
    def compression(self) -> str:
        """GZIP, or ZLIB for folders built before GZIP shards (both read; GZIP also by non-TF readers)."""
        return self.data.get("compression", "ZLIB")

    @property
    def schema(self) -> RecordSchema:
        return RecordSchema.from_dict(self.data["schema"])

    @property
    def splits(self) -> list[str]:
        return list(self.data["splits"])

    def split(self, name: str) -> dict:
        if name not in self.data["splits"]:
            raise ManifestError(f"{self.path}: no split {name!r}; it has {self.splits}")
        return self.data["splits"][name]

    def records(self, split: str) -> int:
        return int(self.split(split)["records"])

    def shard_paths(self, split: str) -> list[str]:
        return [os.path.join(self.folder, s["file"]) for s in self.split(split)["shards"]]

    def label_stats(self, split: str) -> dict:
        return self.split(split).get("label", {})

    def verify(self, splits: list[str] | None = None, checksums: bool = True) -> int:
        """Every shard exists with the recorded size (and SHA-256), else an error naming the shard.

        Sizes first (instant: catches truncation), then hashes on a few threads (hashlib releases
        the GIL), reported in manifest order. Returns the bytes checked.
        """
        shards = [(os.path.join(self.folder, s["file"]), s) for name in splits or self.splits
                  for s in self.split(name)["shards"]]
        for path, shard in shards:
            if not os.path.isfile(path):
                raise ManifestError(f"{path}: shard listed in {self.path} is missing")
            if os.path.getsize(path) != shard["bytes"]:
                raise ManifestError(f"{path}: size {os.path.getsize(path)} differs from the manifest's "
                                    f"{shard['bytes']} (truncated or replaced)")
        if checksums and shards:
            with ThreadPoolExecutor(min(len(shards), os.cpu_count() or 1, 8)) as pool:
                digests = list(pool.map(sha256_file, [p for p, _ in shards]))
            for (path, shard), digest in zip(shards, digests):
                if digest != shard["sha256"]:
                    raise ManifestError(f"{path}: SHA-256 differs from {self.path} (corrupted or replaced)")
        return sum(s["bytes"] for _, s in shards)


def load_manifest(path: str | os.PathLike, layout: str | None = None, length: int | None = None,
                  verify: bool = False) -> Manifest:
    """Load a dataset folder (or its manifest.json) and check it fits the caller's expectations."""
    path = os.fspath(path)
    folder = os.path.dirname(path) if path.endswith(".json") else path
    mpath = os.path.join(folder, MANIFEST)
    if not os.path.isfile(mpath):
        raise ManifestError(f"{mpath}: not found (is {folder!r} a data_prep.build output folder?)")
    try:
        with open(mpath) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{mpath}: not valid JSON ({err})") from None
    if data.get("format") != FORMAT:
        raise ManifestError(f"{mpath}: format {data.get('format')!r} is not {FORMAT!r}")
    m = Manifest(folder, data)
    try:
        _ = m.schema  # parsed here, so a bad schema is this file's error
    except (KeyError, ValueError) as err:
        raise ManifestError(f"{mpath}: bad schema ({err})") from None
    if m.compression not in COMPRESSIONS:
        raise ManifestError(f"{mpath}: shard compression {m.compression!r} is not one of {COMPRESSIONS}; "
                            "rebuild the folder with `python -m data_prep.build`")
    if layout is not None and m.layout != layout:
        raise ManifestError(f"{mpath}: dataset has layout {m.layout!r} but the model needs {layout!r}; "
                            f"rebuild with `python -m data_prep.build --layout {layout}`")
    if length is not None and m.length != length:
        raise ManifestError(f"{mpath}: records are {m.length} nt but the model expects {length}")
    if verify:
        m.verify()
    return m
