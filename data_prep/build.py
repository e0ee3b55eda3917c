"""`python -m data_prep.build`: raw TSV/CSV/FASTA(.gz) -> GZIP TFRecord shards + manifest.json.

Streaming and parallel: the main process cuts inputs into line-aligned chunks and writes shards;
worker processes parse, validate, lay out, hash, serialize, frame and compress each chunk into
complete gzip members. Only a bounded number of chunks is ever in flight, so memory does not grow
with input size, and results are consumed in input order, so shards are byte-identical for any
worker count. A shard holds exactly --records-per-shard records (the last of a split fewer).
Every input record is either written or listed in rejected.tsv with its reason.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from data_prep.command_line import Parser
from data_prep.duplicates import MERGED, POLICIES, Duplicates, Merge, apply_policy
from data_prep.duplicates import summary_line as duplicates_line
from data_prep.errors import BuildError, BuildInterrupted
from data_prep.input_plan import InputPlan, check_options, fail_or_skip, late_failures, plan_inputs, summary_lines
from data_prep.layouts import LAYOUTS, Layout, get_layout
from data_prep.manifest import FORMAT, write_manifest
from data_prep.output_folder import check_output, interruptible, output_path, remove_stale, swap_in
from data_prep.outputs import LockedError, advisory_lock, release_lock
from data_prep.parse import Parsed, Rejection, TableSpec, parse_fasta_chunk, parse_table_chunk
from data_prep.schema import RecordSchema
from data_prep.sources import Chunk, InputError, InputProblem, iter_chunks
from data_prep.splits import SplitSpec
from data_prep.tfrecord import (
    COMPRESSOR,
    MEMBER_RECORDS,
    Segment,
    ShardWriter,
    compress_fixed,
    compress_many,
    frame_fixed,
)

__all__ = ["BuildError", "BuildInterrupted", "build", "main", "parser"]


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one chunk (small apart from the chunk's bytes)."""

    chunk: Chunk
    fasta: bool
    table: TableSpec | None
    layout: Layout
    split: SplitSpec
    #: --duplicates average: this chunk's part of the merge plan (second pass); keys_only: the first pass
    merge: Merge | None = None
    keys_only: bool = False


@dataclass
class ChunkResult:
    records_in: int
    segments: dict[str, Segment]
    stats: dict[str, dict]
    rejections: list[Rejection]
    #: CPU seconds the worker spent on this chunk (summed into the manifest's build section)
    cpu_seconds: float = 0.0
    #: sequence keys, labels and lines of the written records (repeated sequences are counted from them)
    keys: np.ndarray | None = None
    labels: np.ndarray | None = None
    lines: np.ndarray | None = None


def _label_stats(label: np.ndarray, lines: np.ndarray, file_index: int) -> dict:
    hist = collections.Counter(np.clip(np.floor(label), -50, 50).astype(int).tolist())
    return {"count": int(label.size), "sum": float(label.sum()), "sumsq": float((label.astype(np.float64) ** 2).sum()),
            "min": float(label.min()), "max": float(label.max()),
            # where the extremes are (file index, line): a label too large to train on is then named by its line
            "min_at": (file_index, int(lines[np.argmin(label)])), "max_at": (file_index, int(lines[np.argmax(label)])),
            "integers": int((label == np.floor(label)).sum()), "histogram": dict(hist)}


def process_chunk(job: Job) -> ChunkResult:
    start = time.process_time()
    c = job.chunk
    if job.fasta:
        p: Parsed = parse_fasta_chunk(c.data, c.first_line, job.layout, job.split.hash_seed)
        records_in = len(p.line) + len(p.rejections)
    else:
        p = parse_table_chunk(c.data, c.first_line, job.table, job.layout, job.split.hash_seed)
        records_in = c.data.count(b"\n")
    if job.keys_only:
        return ChunkResult(records_in, {}, {}, [], time.process_time() - start, p.key, p.label, p.line)
    if job.merge is not None:
        p.rejections = sorted(p.rejections + job.merge.apply(p), key=lambda r: r.line)
    if len(p.line) + len(p.rejections) != records_in:
        raise AssertionError(f"chunk at line {c.first_line}: records do not add up")  # never silently lose one
    folds = job.split.folds(p.hash)
    which = job.split.assign(folds, p.line - c.first_line, records_in, c.file_index, c.chunk_index)
    labeled = p.label is not None
    schema = RecordSchema(job.layout.length, labeled, job.layout.singleton and labeled, p.ids is not None)
    segments, stats = {}, {}
    for k, name in enumerate(job.split.names):
        m = which == k
        n = int(m.sum())
        if not n:
            continue
        label = p.label[m] if labeled else None
        single = (label == np.floor(label)).astype(np.uint8) if labeled else None
        if schema.has_ids:
            segments[name] = compress_many([schema.serialize_one(p.codes[i], folds[i], id=p.ids[i])
                                            for i in np.flatnonzero(m)])
        else:
            segments[name] = compress_fixed(frame_fixed(schema.serialize_fixed(
                p.codes[m], folds[m], None if label is None else label.astype(np.float32), single)))
        st = {"records": n, "folds": np.bincount(folds[m], minlength=job.split.n_folds).tolist(),
              "truncated": int(p.truncated[m].sum()), "length_min": int(p.length[m].min()),
              "length_max": int(p.length[m].max()), "length_sum": int(p.length[m].sum())}
        if labeled:
            st["label"] = _label_stats(label, p.line[m], c.file_index)
        stats[name] = st
    return ChunkResult(records_in, segments, stats, p.rejections, time.process_time() - start, p.key, p.label, p.line)


def _merge(total: dict, part: dict) -> None:
    for key, value in part.items():
        if key not in total:
            total[key] = value if not isinstance(value, dict) else dict(value)
            if key == "histogram":
                total[key] = collections.Counter(value)
        elif key in ("min", "length_min"):
            if key == "min" and value < total[key]:
                total["min_at"] = part["min_at"]
            total[key] = min(total[key], value)
        elif key in ("max", "length_max"):
            if key == "max" and value > total[key]:
                total["max_at"] = part["max_at"]
            total[key] = max(total[key], value)
        elif key in ("min_at", "max_at"):
            pass  # follows min / max above
        elif key == "folds":
            total[key] = [a + b for a, b in zip(total[key], value)]
        elif key == "histogram":
            total[key].update(value)
        elif isinstance(value, dict):
            _merge(total[key], value)
        else:
            total[key] += value


def _finish_stats(st: dict, paths: list[str]) -> dict:
    out = {"records": st["records"], "folds": {str(i): n for i, n in enumerate(st["folds"])},
           "truncated": st["truncated"],
           "length": {"min": st["length_min"], "max": st["length_max"], "mean": st["length_sum"] / st["records"]}}
    if "label" in st:
        lab = st["label"]
        mean = lab["sum"] / lab["count"]
        out["label"] = {"count": lab["count"], "mean": mean,
                        "std": float(np.sqrt(max(lab["sumsq"] / lab["count"] - mean ** 2, 0.0))),
                        "min": lab["min"], "max": lab["max"],
                        "min_at": f"{paths[lab['min_at'][0]]}:{lab['min_at'][1]}",
                        "max_at": f"{paths[lab['max_at'][0]]}:{lab['max_at'][1]}",
                        "singleton_fraction": lab["integers"] / lab["count"],
                        "histogram": {str(k): v for k, v in sorted(lab["histogram"].items())}}
    return out


@dataclass
class _Output:
    """Shard writers per split, rolling over at exactly `per_shard` records (a segment that crosses the
    boundary is split there; only the gzip member holding the boundary is re-compressed)."""

    folder: str
    per_shard: int
    writers: dict[str, ShardWriter] = field(default_factory=dict)
    shards: dict[str, list] = field(default_factory=lambda: collections.defaultdict(list))

    def add(self, split: str, seg: Segment) -> None:
        while seg.records:
            w = self.writers.get(split)
            if w is None:
                name = f"{split}-{len(self.shards[split]):05d}.tfrecord.gz"
                w = self.writers[split] = ShardWriter(os.path.join(self.folder, name))
            room = self.per_shard - w.records
            head, seg = seg.split(room) if seg.records > room else (seg, Segment([], [], seg.record_size))
            w.append(head)
            if w.records == self.per_shard:
                self.shards[split].append(w.close())
                del self.writers[split]

    def close(self) -> dict[str, list]:
        for split, w in list(self.writers.items()):
            self.shards[split].append(w.close())
        self.writers.clear()
        return self.shards


def _jobs(plans: list[InputPlan], args, layout, split, problems, merges=None, keys_only=False):
    for plan in plans:
        if plan.skipped:
            continue
        file_problems: list[InputProblem] = []
        fasta = plan.fmt == "fasta"
        merge = (merges or {}).get(plan.index)
        try:
            for chunk in iter_chunks(plan.path, plan.index, args.chunk_bytes, fasta, plan.skip_lines, file_problems):
                part = merge and merge.lines(chunk.first_line, chunk.first_line + chunk.data.count(b"\n"))
                yield Job(chunk, fasta, plan.table, layout, split, part or None, keys_only)
        except InputError as err:
            file_problems.append(InputProblem(0, err.reason, str(err)))
        except OSError as err:
            raise BuildError(f"{plan.path}: cannot read ({err.strerror or err})") from None
        if keys_only:
            continue  # the first pass of --duplicates average: the second one records the problems
        for pr in file_problems:
            plan.info["problems"].append({"line": pr.line, "reason": pr.reason, "detail": pr.detail})
            problems.append((plan.path, pr))


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ordered(jobs, workers: int):
    """Run jobs in parallel with a bounded window, yielding results in job order."""
    if workers <= 1:
        for job in jobs:
            yield job, process_chunk(job)
        return
    ctx = multiprocessing.get_context("forkserver")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_ignore_interrupts) as pool:
        window = collections.deque()
        for job in jobs:
            window.append((job, pool.submit(process_chunk, job)))
            if len(window) > 2 * workers:
                j, fut = window.popleft()
                yield j, fut.result()
        while window:
            j, fut = window.popleft()
            yield j, fut.result()


def build(inputs: list[str], out: str, args: argparse.Namespace) -> dict:
    """Library entry point behind the CLI; returns the manifest it wrote.

    Every check that can fail (output folder, inputs, columns) runs before the first record is read.
    """
    check_options(args)
    layout = get_layout(args.layout)
    if args.records_per_shard < 1:
        raise BuildError(f"--records-per-shard must be at least 1, got {args.records_per_shard}")
    split = SplitSpec(args.split, args.n_folds, args.hash_seed, tuple(args.val_folds), tuple(args.test_folds),
                      args.val_fraction, args.test_fraction, args.split_seed)
    policy = getattr(args, "duplicates", "keep")
    apply_policy(policy, {"conflicting_sequences": 0})  # a valid policy
    out = output_path(out)
    try:  # a second build into the same --out while this one runs is refused (the lock file sits beside --out)
        lock = advisory_lock(_lock_file(out), out, "building into this folder",
                             "wait for it to finish or choose another --out")
    except LockedError as err:
        raise BuildError(str(err)) from None
    try:
        check_output(out, inputs)
        plans = plan_inputs(inputs, args)
        remove_stale(out)
        with interruptible():
            merges, counted = _average_plan(plans, args, layout, split) if policy == "average" else (None, None)
            return _build(plans, out, args, layout, split, merges, counted)
    finally:
        release_lock(lock, remove=True)


def _average_plan(plans: list[InputPlan], args, layout, split):
    """--duplicates average, first pass: parse every input (nothing written) to find the copies of each sequence."""
    repeats, paths = Duplicates(), [p.path for p in plans]
    workers = args.workers if sum(os.path.getsize(p) for p in paths) > 2 * args.chunk_bytes else 1
    for job, res in _ordered(_jobs(plans, args, layout, split, [], keys_only=True), workers):
        repeats.add(res.keys, res.labels, job.chunk.file_index, res.lines)
    return repeats.merge_plan(paths), repeats.count(paths)


def _lock_file(out: str) -> str:
    parent, base = os.path.split(os.path.abspath(out))
    return os.path.join(parent, f".{base}.lock")


def _build(plans: list[InputPlan], out: str, args, layout: Layout, split: SplitSpec, merges=None,
           counted=None) -> dict:
    inputs = [p.path for p in plans]
    tmp = f"{out}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    start = time.time()
    problems: list = []
    totals: dict[str, dict] = {}
    by_reason = collections.Counter()
    counts = collections.Counter()
    labeled = set()
    output = _Output(tmp, args.records_per_shard)
    repeats = Duplicates()
    worker_cpu, main_cpu = 0.0, time.process_time()
    try:
        with open(os.path.join(tmp, "rejected.tsv"), "w") as rej:
            rej.write("file\tline\treason\tdetail\ttext\n")

            def rejected(path: str, r: Rejection) -> None:
                msg = f"{path}:{r.line}: {r.reason}: {r.detail}"
                if args.strict and r.reason != MERGED:
                    raise BuildError(msg)
                text = r.text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r")
                rej.write(f"{path}\t{r.line}\t{r.reason}\t{r.detail}\t{text}\n")
                by_reason[r.reason] += 1

            last_report = time.time()
            # small inputs are not worth starting worker processes for
            workers = args.workers if sum(os.path.getsize(p) for p in inputs) > 2 * args.chunk_bytes else 1
            for job, res in _ordered(_jobs(plans, args, layout, split, problems, merges), workers):
                plan = plans[job.chunk.file_index]
                path = plan.path
                plan.count(res.records_in, sum(seg.records for seg in res.segments.values()), res.rejections)
                for r in res.rejections:
                    rejected(path, r)
                counts["records_in"] += res.records_in
                worker_cpu += res.cpu_seconds
                counts["rejected"] += len(res.rejections)
                repeats.add(res.keys, res.labels, job.chunk.file_index, res.lines)
                for name, seg in res.segments.items():
                    output.add(name, seg)
                    counts["written"] += seg.records
                    _merge(totals.setdefault(name, {}), res.stats[name])
                    labeled.add("label" in res.stats[name])
                if time.time() - last_report > 5 and not args.quiet:
                    rate = counts["records_in"] / (time.time() - start)
                    print(f"  {counts['records_in']:,} records ({rate:,.0f}/s)", file=sys.stderr)
                    last_report = time.time()
            for path, pr in problems:  # file-level problems, after the file's records
                msg = f"{path}:{pr.line}: {pr.reason}: {pr.detail}"
                if args.strict:
                    raise BuildError(msg)
                if pr.partial_record:  # the cut-off last line is a record we could not read
                    counts["records_in"] += 1
                    counts["rejected"] += 1
                    r = Rejection(pr.line, pr.reason, pr.detail, pr.partial_record.decode("latin-1")[:200])
                    plans[inputs.index(path)].count(1, 0, [r])
                    rejected(path, r)
                else:
                    rej.write(f"{path}\t{pr.line}\t{pr.reason}\t{pr.detail}\t\n")
            for plan in plans:
                if plan.skipped:
                    for pr in plan.info["problems"]:
                        rej.write(f"{plan.path}\t{pr['line']}\t{pr['reason']}\t{pr['detail']}\t\n")
        fail_or_skip(late_failures(plans, problems), len(inputs), args)
        shards = output.close()
        if counts["written"] == 0:
            reasons = ", ".join(f"{r} {n:,}" for r, n in by_reason.most_common(3))
            raise BuildError(f"no records written from {len(inputs)} input file(s)"
                             + (f": all {counts['rejected']:,} records were rejected ({reasons})"
                                if counts["rejected"] else "; every file was empty or skipped"))
        if counts["records_in"] != counts["written"] + counts["rejected"]:
            raise AssertionError("records in != written + rejected")  # an invariant, never expected
        if len(labeled) > 1:
            raise BuildError("inputs mix labeled and unlabeled records; build them separately")
        duplicates = counted or repeats.count(inputs)  # average: what the first pass found (now merged)
        apply_policy(getattr(args, "duplicates", "keep"), duplicates)
        has_label = labeled == {True}
        fasta = any(p.fmt == "fasta" and not p.skipped for p in plans)
        schema = RecordSchema(layout.length, has_label, layout.singleton and has_label, fasta)
        total_bytes = sum(s["bytes"] for v in shards.values() for s in v)
        manifest = {
            "format": FORMAT, "layout": layout.name, "schema": schema.to_dict(), "compression": "GZIP",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": [p.info for p in plans], "split": split.to_dict(),
            "counts": {"records_in": counts["records_in"], "written": counts["written"],
                       "rejected": counts["rejected"], "rejected_by_reason": dict(sorted(by_reason.items())),
                       "truncated": sum(t["truncated"] for t in totals.values()),
                       "file_problems": sum(len(p.info["problems"]) for p in plans),
                       "files_skipped": sum(p.skipped for p in plans),
                       "duplicates": {**duplicates, "policy": getattr(args, "duplicates", "keep")}},
            "splits": {name: {**_finish_stats(totals[name], inputs), "shards": shards[name]}
                       for name in split.names if name in totals},
            "bytes_per_record": total_bytes / counts["written"],
            "build": {"chunk_bytes": args.chunk_bytes, "records_per_shard": args.records_per_shard,
                      "compressor": COMPRESSOR, "member_records": MEMBER_RECORDS, "workers": args.workers,
                      "seconds": round(time.time() - start, 3),
                      "cpu_seconds": {"workers": round(worker_cpu, 3),
                                      "main": round(time.process_time() - main_cpu, 3)}},
        }
        write_manifest(tmp, manifest)
        swap_in(tmp, out)
    except BaseException:
        for w in output.writers.values():
            w.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _folds(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser(prog: str = "python -m data_prep.build") -> argparse.ArgumentParser:
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog="examples:\n"
                      f"  {prog} train.tsv --out data/train.crmnet\n"
                      f"  {prog} a.csv.gz b.csv.gz --out data/ab --layout legnet --split hash --val-folds 8,9\n"
                      f"  {prog} test.tsv --out data/test --split none --duplicates refuse")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="TSV/CSV/FASTA files, optionally .gz")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (required; replaced whole only if it is an earlier build holding nothing "
                        "else; a second build into it while this one runs is refused)")
    p.add_argument("--layout", default="crmnet", choices=sorted(LAYOUTS), metavar="NAME",
                   help=f"record layout, one of {', '.join(sorted(LAYOUTS))} (default: crmnet)")
    g = p.add_argument_group("input")
    g.add_argument("--format", default="auto", choices=["auto", "tsv", "csv", "fasta"],
                   help="input format, one of auto, tsv, csv, fasta (default: auto, from the name and content)")
    g.add_argument("--header", default="auto", choices=["auto", "yes", "no"],
                   help="whether table files start with a header line: auto, yes, no (default: auto)")
    g.add_argument("--seq-col", default=None, metavar="COLUMN",
                   help="sequence column name or 0-based index (default: found from the header and content)")
    g.add_argument("--expr-col", default=None, metavar="COLUMN",
                   help="expression column name or index; 'none' for unlabeled (default: found from the header "
                        "and content)")
    g.add_argument("--duplicates", default="keep", choices=POLICIES,
                   help="sequences that occur more than once: keep every record; average: one record per sequence "
                        "labelled with the mean (later copies listed in rejected.tsv as duplicate_merged); refuse "
                        "the build if copies have different labels (default: keep; the manifest and the summary "
                        "always count them)")
    g = p.add_argument_group("splits")
    g.add_argument("--split", default="hash", choices=["hash", "random", "none"],
                   help="hash: folds by a hash of the sequence (copies of a sequence share a fold); random; none: "
                        "one split 'all' (default: hash)")
    g.add_argument("--n-folds", type=int, default=10, metavar="N", help="number of folds (default: 10)")
    g.add_argument("--hash-seed", type=int, default=0, metavar="N", help="mmh3 seed of the folds (default: 0)")
    g.add_argument("--val-folds", type=_folds, default=[9], metavar="LIST",
                   help="comma-separated folds for validation (default: 9)")
    g.add_argument("--test-folds", type=_folds, default=[], metavar="LIST",
                   help="comma-separated folds for test (default: none)")
    g.add_argument("--val-fraction", type=float, default=0.01, metavar="X",
                   help="validation fraction, random split only (default: 0.01)")
    g.add_argument("--test-fraction", type=float, default=0.0, metavar="X",
                   help="test fraction, random split only (default: 0)")
    g.add_argument("--split-seed", type=int, default=0, metavar="N", help="seed of the random split (default: 0)")
    g = p.add_argument_group("performance")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help=f"worker processes (default: the CPU count, {os.cpu_count() or 1} here)")
    g.add_argument("--chunk-bytes", type=int, default=4 << 20, metavar="N",
                   help="input bytes per work unit (default: 4194304, 4 MiB)")
    g.add_argument("--records-per-shard", type=int, default=1_000_000, metavar="N",
                   help="records in each shard file of a split (its last shard holds the rest); readers on "
                        "several processes split a split's shards between them, so give each at least one "
                        "(default: 1000000)")
    p.add_argument("--strict", action="store_true", help="abort on the first bad record instead of rejecting it")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="build from the good inputs when a file fails as a whole (unreadable, empty, columns not "
                        "resolved, truncated, every record rejected); default: such a file fails the build")
    p.add_argument("--quiet", action="store_true", help="no progress lines while building")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m data_prep.build") -> int:
    args = parser(prog).parse_args(argv)
    try:
        m = build(args.inputs, args.out, args)
    except (BuildError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (BuildInterrupted)
        signum = getattr(err, "signum", 2)
        print(f"interrupted ({signal.Signals(signum).name}): the build stopped and its temporary files were removed",
              file=sys.stderr)
        return 128 + signum
    c = m["counts"]
    splits = ", ".join(f"{k} {v['records']:,}" for k, v in m["splits"].items())
    print(f"{args.out}: {c['records_in']:,} records in, {c['written']:,} written ({splits}), "
          f"{c['rejected']:,} rejected{' ' + str(c['rejected_by_reason']) if c['rejected'] else ''}, "
          f"{c['truncated']:,} truncated to {m['schema']['length']} nt; {m['bytes_per_record']:.1f} B/record; "
          f"{m['build']['seconds']:.1f} s")
    print("\n".join(summary_lines(m) + [line for line in [duplicates_line(c.get("duplicates"))] if line]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
