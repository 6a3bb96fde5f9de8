"""Loading a checkpoint: time and peak memory of `sumi.load` vs plain transformers `from_pretrained`.

Writes a safetensors checkpoint of a preset's shape (default `sumi-7b`, 7.77B parameters, bf16 in
5 GB shards with a `model.safetensors.index.json`, like the official release) filled with seeded
random normal weights (std 0.02, norms 1), or reuses one with `--path`, then loads it with each
loader:

* `sumi`: `sumi.load(path, dtype=...)` (meta-device model, weights taken from the memory-mapped
  shards: zero-copy views when the dtype matches, block-wise conversion otherwise);
* `transformers`: `SumiForMaskGeneration.from_pretrained(path, dtype=...)` with transformers'
  defaults (what `sumi.load` did before);
* `naive` (opt-in): the plain PyTorch way: build the model (random init), then
  `load_state_dict(safetensors.torch.load_file(shard))` shard by shard.

Each case and loader runs in a fresh process, the loaders alternating case by case, each right
after its checkpoint files were read once (so the page cache is warm where memory allows).

Peak memory = the process's peak resident set (VmHWM of /proc/self/status: anonymous memory plus
touched pages of file mappings) while loading and then reading every weight once (so lazily mapped
weights are counted), minus the resident set just before the load (after a warm-up load of a tiny
checkpoint, so imports are not counted). Peaks of the anonymous and file-backed parts (RssAnon,
RssFile) are sampled every 5 ms by a thread. Weights = bytes of the loaded parameters (in the
model's dtype). Times: `load`, and load + that first read of every weight (which is when lazily
mapped weights are read).

    python benchmarks/bench_load.py                          # sumi-7b, bf16 shards -> bf16 (15.5 GB on disk)
    python benchmarks/bench_load.py --path /tmp/sumi7b --keep  # write once, keep it for later runs
    python benchmarks/bench_load.py --preset sumi-1b --cases bf16:bf16 bf16:fp32 fp32:fp32 fp32:bf16 \\
        --layouts sharded single --loaders sumi transformers naive
    python benchmarks/bench_load.py --quick                  # a 7M-parameter shape, every case, seconds
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DTYPE_NAMES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}
LOADERS = ("sumi", "transformers", "naive")
BASELINE = "transformers"
# --quick: the sumi-7b layout (GQA 4:1, SwiGLU, untied head) at 7M parameters.
QUICK_SHAPE = dict(
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=64,
    vocab_size=8192,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
TINY_SHAPE = dict(QUICK_SHAPE, hidden_size=32, intermediate_size=64, num_hidden_layers=1, head_dim=8, vocab_size=300)
MiB = 2**20
# glibc raises its mmap threshold (up to 32 MiB) after a large free and then serves later tensors from
# a heap it keeps: one case would reuse memory freed by the previous one and look cheaper. A fixed
# threshold makes every tensor of 64 KiB or more its own mapping, returned to the system when freed.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- writing a checkpoint
def write_checkpoint(folder: Path, config, dtype_name: str, layout: str, shard_bytes: int, seed: int = 0) -> int:
    """A checkpoint of `config`'s shape in `folder`: config.json and safetensors weights in
    `dtype_name`, one file (`layout="single"`) or shards of at most `shard_bytes` with an index.
    Tensors are generated one shard at a time (a shard is the most held in memory). Returns the bytes
    of the weights. A `bench_complete.json` marks a finished folder (reused by `--path`)."""
    import torch
    from safetensors.torch import save_file

    from sumi import SumiForMaskGeneration

    dtype = getattr(torch, DTYPE_NAMES[dtype_name])
    folder.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SumiForMaskGeneration(config).state_dict().items()}
    nbytes = {k: torch.Size(s).numel() * dtype.itemsize for k, s in shapes.items()}
    groups: list[list[str]] = [[]]
    for name in shapes:  # consecutive names, a new shard when the next tensor would not fit
        if layout == "sharded" and groups[-1] and sum(nbytes[k] for k in groups[-1]) + nbytes[name] > shard_bytes:
            groups.append([])
        groups[-1].append(name)
    g = torch.Generator().manual_seed(seed)
    weight_map = {}
    for i, names in enumerate(groups):
        file = "model.safetensors" if layout == "single" else f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name in names:
            t = torch.empty(shapes[name], dtype=dtype)
            tensors[name] = t.fill_(1.0) if len(shapes[name]) == 1 else t.normal_(0.0, 0.02, generator=g)
        log(f"  writing {folder.name}/{file} ({sum(nbytes[k] for k in names) / 1e9:.2f} GB)")
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        del tensors
        weight_map.update({k: file for k in names})
    total = sum(nbytes.values())
    if layout == "sharded":
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        )
    config.dtype = DTYPE_NAMES[dtype_name]
    config.save_pretrained(folder)
    (folder / "bench_complete.json").write_text(
        json.dumps({"weights_bytes": total, "dtype": dtype_name, "layout": layout})
    )
    return total


def warm_page_cache(folder: Path) -> None:
    """Read every weight file of `folder` once (into the page cache, not into this process)."""
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb", buffering=0) as f:
            while f.read(64 * MiB):
                pass


# ----------------------------------------------------------------------------- measuring (child process)
def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so one process can measure several loads."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Largest RssAnon and RssFile seen, polled every `interval` s (a peak shorter than that is missed;
    VmHWM, exact, gives the total)."""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.stop, self.anon, self.file = interval, threading.Event(), 0, 0

    def run(self):
        while not self.stop.is_set():
            s = proc_status()
            self.anon, self.file = max(self.anon, s["RssAnon"]), max(self.file, s["RssFile"])
            time.sleep(self.interval)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def load_with(loader: str, path: str, dtype_name: str | None):
    """The model in `path` loaded by `loader` (see the module docstring), in eval mode."""
    import torch
    from safetensors.torch import load_file

    import sumi
    from sumi import SumiConfig, SumiForMaskGeneration

    dtype = getattr(torch, DTYPE_NAMES[dtype_name]) if dtype_name else None
    if loader == "sumi":
        return sumi.load(path, dtype=dtype)[0]
    if loader == "transformers":
        return SumiForMaskGeneration.from_pretrained(path, dtype=dtype or "auto").eval()
    if loader == "naive":
        config = SumiConfig.from_pretrained(path)
        model = SumiForMaskGeneration._from_config(config, **({"dtype": dtype} if dtype else {}))
        for file in sorted(Path(path).glob("*.safetensors")):
            model.load_state_dict(load_file(file), strict=False)
        return model.eval()
    raise ValueError(f"unknown loader {loader!r}")


def touch(model) -> float:
    """Read one element per 4 KiB page of every weight (faults in lazily mapped pages); returns
    their sum, a cheap fingerprint to compare loaders."""
    total = 0.0
    for p in model.parameters():
        step = max(1, 4096 // p.element_size())
        total += float(p.detach().reshape(-1)[::step].double().sum())
    return total


def child(spec: dict) -> None:
    """Measure each case of `spec` in this process (VmHWM reset in between); print a JSON list."""
    import torch

    torch.set_num_threads(spec["threads"])
    for loader in spec["loaders"]:
        load_with(loader, spec["warmup"], None)  # imports and first-call set-up, not counted
    results = []
    for loader, case in ((loader, case) for loader in spec["loaders"] for case in spec["cases"]):
        gc.collect()
        if not reset_peak_rss() and results:
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs): run one case per process")
        before = proc_status()
        with RssSampler() as sampler:
            t0 = time.perf_counter()
            model = load_with(loader, case["path"], case["dtype"])
            t_load = time.perf_counter() - t0
            fingerprint = touch(model)
            t_touch = time.perf_counter() - t0
        after = proc_status()
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        results.append(
            dict(
                case,
                loader=loader,
                load_s=t_load,
                load_touch_s=t_touch,
                weights=weights,
                peak=after["VmHWM"] - before["VmRSS"],
                base_rss=before["VmRSS"],
                peak_anon=max(sampler.anon, after["RssAnon"]) - before["RssAnon"],
                peak_file=max(sampler.file, after["RssFile"]) - before["RssFile"],
                model_dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
                fingerprint=fingerprint,
            )
        )
        del model
    print("RESULT " + json.dumps(results), flush=True)


# ----------------------------------------------------------------------------- report
def machine_info(threads: int) -> dict:
    import safetensors
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    mem = None
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        mem = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    return dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        cpu=cpu,
        cpu_count=os.cpu_count(),
        ram_bytes=mem,
        torch_threads=threads,
        torch=torch.__version__,
        transformers=transformers.__version__,
        safetensors=safetensors.__version__,
        python=platform.python_version(),
    )


def fmt_s(s: float) -> str:
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def fmt_mib(b: int) -> str:
    return f"{b / MiB:,.0f} MiB"


def table(rows: list[dict]) -> str:
    lines = [
        "| file → model | layout | loader | load | load + first read | peak RSS | (anon / file) | weights "
        "| peak / weights | peak vs transformers | time vs transformers |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = next((b for b in rows if b["loader"] == BASELINE and b["case"] == r["case"]), None)
        vs_peak = f"{r['peak'] / base['peak']:.2f}×" if base and base["peak"] > 0 else "–"
        vs_time = f"{r['load_touch_s'] / base['load_touch_s']:.2f}×" if base else "–"
        lines.append(
            f"| {r['file_dtype']} → {r['model_dtype']} | {r['layout']} | {r['loader']} "
            f"| {fmt_s(r['load_s'])} | {fmt_s(r['load_touch_s'])} | {fmt_mib(r['peak'])} | {fmt_mib(r['peak_anon'])} / "
            f"{fmt_mib(r['peak_file'])} | {fmt_mib(r['weights'])} | {r['peak'] / r['weights']:.2f}× "
            f"| {vs_peak} | {vs_time} |"
        )
    return "\n".join(lines)


def merge_repeats(rows: list[dict]) -> list[dict]:
    """One row per case and loader: the best times and the largest peaks of its repeats."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        m = merged.setdefault((r["case"], r["loader"]), dict(r, repeats=0))
        m["repeats"] += 1
        m.update({k: min(m[k], r[k]) for k in ("load_s", "load_touch_s")})
        m.update({k: max(m[k], r[k]) for k in ("peak", "peak_anon", "peak_file")})
        m["fingerprint"] = m["fingerprint"] if m["fingerprint"] == r["fingerprint"] else None
    return list(merged.values())


# ----------------------------------------------------------------------------- main
def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sumi-7b")
    ap.add_argument(
        "--cases",
        nargs="+",
        default=["bf16:bf16"],
        help="FILE:MODEL dtype pairs (bf16, fp32, fp16), e.g. bf16:bf16 fp32:bf16",
    )
    ap.add_argument("--layouts", nargs="+", default=["sharded"], choices=["sharded", "single"])
    ap.add_argument("--loaders", nargs="+", default=["sumi", "transformers"], choices=LOADERS)
    ap.add_argument("--shard-size", default="5GB", help="largest shard (save_pretrained's default: 5GB)")
    ap.add_argument(
        "--path",
        type=Path,
        default=None,
        help="folder for the checkpoints (FOLDER/<dtype>-<layout>); complete ones are reused",
    )
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints this run wrote")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="load each case N times per loader (alternating): best time, largest peak",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="7M-parameter shape, every case and layout")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))

    from sumi import SumiConfig

    overrides = {}
    if args.quick:
        args.preset, overrides, args.shard_size = "sumi-7b", QUICK_SHAPE, "8MB"
        if args.cases == ap.get_default("cases"):
            args.cases = ["bf16:bf16", "bf16:fp32", "fp32:fp32", "fp32:bf16"]
        if args.layouts == ap.get_default("layouts"):
            args.layouts = ["sharded", "single"]
    config = SumiConfig.from_preset(args.preset, **overrides)
    cases = [tuple(c.split(":")) for c in args.cases]
    for pair in cases:
        if len(pair) != 2 or not set(pair) <= set(DTYPE_NAMES):
            ap.error(f"bad case {':'.join(pair)!r}: want FILE:MODEL with dtypes from {', '.join(DTYPE_NAMES)}")

    root = args.path or Path(tempfile.mkdtemp(prefix="bench_load_", dir=os.environ.get("TMPDIR", "/tmp")))
    written: list[Path] = []
    try:
        folders = {}
        for file_dtype in dict.fromkeys(f for f, _ in cases):
            for layout in args.layouts:
                folder = root / f"{file_dtype}-{layout}"
                if (folder / "bench_complete.json").is_file():
                    log(f"reusing {folder}")
                else:
                    shutil.rmtree(folder, ignore_errors=True)
                    t0 = time.perf_counter()
                    written.append(folder)
                    write_checkpoint(
                        folder,
                        SumiConfig.from_preset(args.preset, **overrides),
                        file_dtype,
                        layout,
                        parse_size(args.shard_size),
                    )
                    log(f"  wrote {folder} in {time.perf_counter() - t0:.0f} s")
                folders[file_dtype, layout] = folder
        warmup = root / "tiny"
        if not (warmup / "bench_complete.json").is_file():
            written.append(warmup)
            write_checkpoint(warmup, SumiConfig.from_preset("sumi-7b", **TINY_SHAPE), "bf16", "single", 1)

        # skip cases whose model would not fit in memory
        from sumi.modeling_sumi import parameter_counts

        n_params = parameter_counts(config)["total"]
        avail = next((int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemAvailable")), None)
        specs = []
        for file_dtype, dtype in cases:
            need = n_params * (2 if dtype != "fp32" else 4)
            if avail is not None and need > 0.8 * avail:
                log(
                    f"skipping {file_dtype}:{dtype}: the {need / 1e9:.1f} GB model does not fit in "
                    f"{avail / 1e9:.1f} GB of available memory"
                )
                continue
            specs += [
                dict(
                    case=len(specs) + i,
                    file_dtype=file_dtype,
                    dtype=dtype,
                    layout=layout,
                    path=str(folders[file_dtype, layout]),
                )
                for i, layout in enumerate(args.layouts)
            ]

        rows = []
        # A fresh process for each case and loader, the loaders alternating case by case so that a
        # busy spell of a shared machine hits both (with --quick one process for all, to save start-up
        # time; VmHWM is reset between the cases a process measures). Each starts with its files
        # just read, i.e. in the page cache where memory allows.
        runs = (
            [(args.loaders, specs)]
            if args.quick
            else [([l], [c]) for c in specs for _ in range(args.repeats) for l in args.loaders]
        )
        for loaders, cases_of_run in runs:
            for path in dict.fromkeys(c["path"] for c in cases_of_run):
                warm_page_cache(Path(path))
            log(f"loading with {', '.join(loaders)}: {len(cases_of_run)} case(s)")
            spec = dict(loaders=loaders, cases=cases_of_run, warmup=str(warmup), threads=args.threads)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
                env=dict(os.environ, TQDM_DISABLE="1", **MALLOC_ENV),
            )
            result = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or result is None:
                sys.exit(f"{', '.join(loaders)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            rows += json.loads(result[len("RESULT ") :])
        rows = merge_repeats(rows)
        rows.sort(key=lambda r: (r["case"], args.loaders.index(r["loader"])))
        for r in rows:  # every loader must load the same weights
            r["same_weights"] = r["fingerprint"] is not None and all(
                o["fingerprint"] == r["fingerprint"] for o in rows if o["case"] == r["case"]
            )
    finally:
        if not args.keep:
            for folder in written:
                shutil.rmtree(folder, ignore_errors=True)
            if args.path is None:
                shutil.rmtree(root, ignore_errors=True)
        elif written:
            log(f"kept {root}")

    info = machine_info(args.threads)
    shard = f"{parse_size(args.shard_size) / 1e9:g} GB shards" if "sharded" in args.layouts else "one file"
    repeats = "" if args.quick or args.repeats == 1 else f", best time / largest peak of {args.repeats} runs"
    print(
        f"\n## bench_load: {args.preset}{' (quick shape)' if args.quick else ''}, {n_params:,} parameters, "
        f"{shard}, random normal weights{repeats}\n"
    )
    ram = f"{info['ram_bytes'] / 2**30:.0f} GiB RAM" if info["ram_bytes"] else "RAM unknown"
    print(
        f"{info['cpu']}, {info['cpu_count']} cores, {ram}, torch {info['torch']}, transformers "
        f"{info['transformers']}, safetensors {info['safetensors']}, {info['torch_threads']} threads, "
        f"{info['date']}\n"
    )
    print(table(rows))
    print(
        "\npeak RSS: growth of VmHWM over the RSS before the load, through the load and a first read of every "
        "weight; anon / file: sampled peaks of RssAnon and RssFile (file = touched pages of the memory-mapped "
        "checkpoint). Weights: bytes of the loaded parameters."
    )
    if not all(r["same_weights"] for r in rows):
        print("\nWARNING: loaders disagree on the weights (fingerprints differ)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                dict(machine=info, preset=args.preset, quick=args.quick, parameters=n_params, rows=rows), indent=2
            )
        )


if __name__ == "__main__":
    main()
