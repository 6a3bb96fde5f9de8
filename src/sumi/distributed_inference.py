"""Data-parallel inference: one model per process, the work split by rank, rank 0 gathers.

Under a launcher that sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``), e.g. ``torchrun --nproc_per_node=8``, every process of `sumi eval`, `sumi
perplexity`, `sumi analyze` and `sumi generate --prompts-file` loads the model on its own device
(``cuda:LOCAL_RANK``), takes a contiguous block of the pending items (`shard_bounds`), and rank 0
collects every block and writes the one result in input order (`sharded_map`).

The processes talk only through the launcher's key-value store (the ``TCPStore`` that
``torch.distributed`` rendezvous uses; torchrun's agent store when torchrun started them): no
process group and so no collective whose timeout would have to outlast the slowest shard. A rank
that waits for the others polls the store, while a heartbeat thread in every rank bumps its own
counter and watches the others' (`Peers`): a rank whose counter stops moving for ``dead_after_s``
seconds, or that reports an error, or a store that stops answering, ends every other rank within
seconds with a one-line error (never a hang).

Results must not depend on the number of processes, so the randomness of an item derives from
its content and the seed (`sumi.seeding.derive_seed`), never from its position in a batch.

With a `ShardFiles` folder, each finished block of items is written atomically as one shard file
(keyed by a fingerprint of everything that decides the results); a rerun with the same settings
loads the finished shards and computes only the items they lack, whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic

HEARTBEAT_S = 0.5  # how often a rank bumps its counter and looks at the others'
DEAD_AFTER_S = 20.0  # a counter that has not moved for this long means the rank is gone
_POLL_S = 0.05  # how often a waiting rank asks the store


# ----------------------------------------------------------------------------- launch environment
@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a launched run (1 process of 1 when nothing launched it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(environ: Mapping[str, str], name: str, minimum: int) -> int:
    text = environ[name]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name} must be an integer >= {minimum}, got {text!r}")
    return value


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """RANK / WORLD_SIZE / LOCAL_RANK from the environment (torchrun's names); absent: one process."""
    env = os.environ if environ is None else environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return LaunchEnv(local_rank=_env_int(env, "LOCAL_RANK", 0) if "LOCAL_RANK" in env else 0)
    for name in ("RANK", "WORLD_SIZE"):
        if name not in env:
            raise ValueError(
                f"environment variable {name} is not set but "
                f"{'WORLD_SIZE' if name == 'RANK' else 'RANK'} is: a launcher sets both"
            )
    rank, world = _env_int(env, "RANK", 0), _env_int(env, "WORLD_SIZE", 1)
    if rank >= world:
        raise ValueError(f"environment variable RANK must be below WORLD_SIZE ({world}), got {rank}")
    local = _env_int(env, "LOCAL_RANK", 0) if "LOCAL_RANK" in env else rank
    if world > 1:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not env.get(name):
                raise ValueError(
                    f"environment variable {name} is not set: WORLD_SIZE={world} needs the address "
                    "of rank 0's store (torchrun sets it)"
                )
    return LaunchEnv(rank=rank, world_size=world, local_rank=local)


def rank_device(device, env: LaunchEnv | None = None):
    """`device` with this rank's GPU: a bare `cuda` becomes `cuda:LOCAL_RANK` (modulo the GPU count)."""
    import torch

    env = env or launch_env()
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", env.local_rank % max(1, torch.cuda.device_count()))
    if device.type == "cuda" and env.world_size > 1:
        torch.cuda.set_device(device)  # what a bare "cuda" inside torch and libraries then means
    return device


# ----------------------------------------------------------------------------- splitting work
def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """`[start, end)` of rank `rank`'s contiguous block of `n` items; sizes differ by at most one."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    a, b = shard_bounds(len(items), rank, world_size)
    return list(items[a:b])


def chunks(n: int, size: int | None) -> list[tuple[int, int]]:
    """`[start, end)` blocks of at most `size` (None: one block) covering `range(n)`."""
    if n == 0:
        return []
    size = n if size is None else max(1, size)
    return [(a, min(n, a + size)) for a in range(0, n, size)]


# ----------------------------------------------------------------------------- the processes of a run
def _fatal(message: str) -> None:
    """End this process now, from any thread, with a one-line error."""
    print(f"sumi: error: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def _seconds_env(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"environment variable {name} must be a number of seconds > 0, got {text!r}")
    return value


class Peers:
    """The processes of one launched run, talking through the launcher's store (see the module
    docstring). With one process every method is local. Use as a context manager: an exception
    leaving the block is reported to the other ranks, which then end at once.

    Every rank must call `gather` / `all_gather` / `barrier` in the same order (each call is
    numbered); only `gather`'s destination receives the objects.
    """

    def __init__(
        self,
        env: LaunchEnv | None = None,
        *,
        store=None,
        heartbeat_s: float | None = None,
        dead_after_s: float | None = None,
    ):
        self.env = env or launch_env()
        self.heartbeat_s = heartbeat_s or _seconds_env("SUMI_HEARTBEAT_S", HEARTBEAT_S)
        self.dead_after_s = dead_after_s or _seconds_env("SUMI_DEAD_AFTER_S", DEAD_AFTER_S)
        self._calls = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store = store
        if self.world_size > 1:
            if self.store is None:
                self.store = _connect_store(self.env)
            self._thread = threading.Thread(
                target=self._watch, args=(self.store.clone(),), daemon=True, name="sumi-heartbeat"
            )
            self._thread.start()

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is not None and self.world_size > 1 and not isinstance(error, SystemExit):
            message = " ".join(str(error).split()) or type(error).__name__
            try:
                self.store.set(f"failed/{self.rank}", message[:500])
            except Exception:  # noqa: BLE001 - the store may be gone too; we are failing anyway
                pass
        self.close(clean=error is None)

    # -- watching the others
    def _watch(self, store) -> None:
        # per other rank: (its counter, when it last moved, my own beats since then); a rank is dead
        # when its counter stood still for dead_after_s AND this thread kept beating meanwhile (a
        # starved machine that also stalled this thread blames nobody)
        seen = {r: (-1, time.monotonic(), 0) for r in range(self.world_size) if r != self.rank}
        needed = max(2, int(0.8 * self.dead_after_s / self.heartbeat_s))
        while not self._stop.wait(self.heartbeat_s):
            try:
                store.add(f"beat/{self.rank}", 1)
                for r, (count, since, beats) in list(seen.items()):
                    if store.check([f"failed/{r}"]):
                        _fatal(
                            f"rank {r} of {self.world_size} failed: {store.get(f'failed/{r}').decode()}; ending the run"
                        )
                    if store.check([f"done/{r}"]):
                        del seen[r]
                        continue
                    now_count = store.add(f"beat/{r}", 0)
                    if now_count != count:
                        seen[r] = (now_count, time.monotonic(), 0)
                        continue
                    seen[r] = (count, since, beats + 1)
                    if time.monotonic() - since > self.dead_after_s and beats + 1 >= needed:
                        _fatal(
                            f"rank {r} of {self.world_size} stopped responding (no heartbeat for "
                            f"{self.dead_after_s:g} s): ending the run (finished shards are kept; rerun with "
                            "--resume where the command has it)"
                        )
            except Exception as e:  # noqa: BLE001 - any store failure means rank 0's store is gone
                if self._stop.is_set():
                    return
                _fatal(
                    f"lost the connection to the run's store ({' '.join(str(e).split())[:160]}): "
                    "a rank (or the launcher) has gone; ending the run"
                )

    def _wait_for(self, keys: list[str]) -> None:
        while not self.store.check(keys):
            time.sleep(_POLL_S)

    # -- exchanging objects
    def gather(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Every rank's `obj` in rank order at `dst`; None elsewhere."""
        if self.world_size == 1:
            return [obj]
        self._calls += 1
        tag = f"gather/{self._calls}"
        if self.rank != dst:
            self.store.set(f"{tag}/{self.rank}", pickle.dumps(obj))
            return None
        others = [r for r in range(self.world_size) if r != dst]
        self._wait_for([f"{tag}/{r}" for r in others])
        out = []
        for r in range(self.world_size):
            if r == dst:
                out.append(obj)
                continue
            out.append(pickle.loads(self.store.get(f"{tag}/{r}")))
            self.store.delete_key(f"{tag}/{r}")
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (for small objects)."""
        if self.world_size == 1:
            return [obj]
        self._calls += 1
        tag = f"allgather/{self._calls}"
        self.store.set(f"{tag}/{self.rank}", pickle.dumps(obj))
        keys = [f"{tag}/{r}" for r in range(self.world_size)]
        self._wait_for(keys)
        return [pickle.loads(v) for v in self.store.multi_get(keys)]

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """`src`'s `obj` on every rank."""
        if self.world_size == 1:
            return obj
        self._calls += 1
        key = f"broadcast/{self._calls}"
        if self.rank == src:
            self.store.set(key, pickle.dumps(obj))
            return obj
        self._wait_for([key])
        return pickle.loads(self.store.get(key))

    def barrier(self) -> None:
        self.all_gather(None)

    def close(self, clean: bool = True) -> None:
        """Say this rank is done; rank 0 (which may host the store) waits for the others first."""
        if self._thread is None:
            return
        try:
            self.store.set(f"done/{self.rank}", "1")
            if clean and self.is_main:
                self._wait_for([f"done/{r}" for r in range(self.world_size)])
        finally:
            self._stop.set()
            self._thread.join(timeout=2 * self.heartbeat_s + 1)
            self._thread = None


def _connect_store(env: LaunchEnv):
    """The launcher's store: torchrun's agent store, else one that rank 0 hosts at MASTER_ADDR:MASTER_PORT."""
    import torch.distributed as dist

    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    timeout = timedelta(seconds=_seconds_env("SUMI_STORE_TIMEOUT_S", 600.0))
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    master = env.rank == 0 and not agent
    # every process registers with the store (the host waits for all of them: a rendezvous)
    store = dist.TCPStore(host, port, env.world_size, master, timeout)
    # separate this run's keys from the launcher's own (and from a restarted attempt's)
    run, attempt = os.environ.get("TORCHELASTIC_RUN_ID", ""), os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"sumi-inference/{run}/{attempt}/", store)


# ----------------------------------------------------------------------------- per-shard result files
def fingerprint(settings: Any) -> str:
    """16 hex digits naming `settings` (JSON-able): shard files of other settings are never reused."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class ShardFiles:
    """Finished shards of one piece of work (`name`, e.g. a task) under `folder`: one JSON file per
    shard, `<name>.<fingerprint>.<first key>-<n>.json`, written atomically, holding the records of
    its items (by key) and counts to sum over shards."""

    def __init__(self, folder: str | os.PathLike, name: str, settings: Any):
        self.folder = Path(folder)
        self.name = name
        self.fingerprint = fingerprint(settings)

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob(f"{self.name}.{self.fingerprint}.*.json"))

    def load(self) -> tuple[dict[str, Any], dict[str, int], int]:
        """`(records by key, summed counts, number of shard files)` of the finished shards; a file
        that does not parse, or repeats keys another file holds, is ignored (its items are redone)."""
        records: dict[str, Any] = {}
        counts: dict[str, int] = {}
        used = 0
        for path in self._files():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                part, part_counts = dict(data["records"]), dict(data.get("counts") or {})
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if data.get("fingerprint") != self.fingerprint or records.keys() & part.keys():
                continue
            records.update(part)
            for k, v in part_counts.items():
                counts[k] = counts.get(k, 0) + int(v)
            used += 1
        return records, counts, used

    def clear(self) -> int:
        """Remove the shard files of these settings (a run that does not resume starts afresh)."""
        files = self._files()
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)

    def write(self, records: Mapping[str, Any], counts: Mapping[str, int] | None = None) -> Path:
        keys = list(records)
        path = self.folder / f"{self.name}.{self.fingerprint}.{_safe(keys[0]) if keys else 'empty'}-{len(keys)}.json"
        text = json.dumps(
            dict(fingerprint=self.fingerprint, name=self.name, records=dict(records), counts=dict(counts or {})),
            ensure_ascii=False,
            default=str,
        )
        write_text_atomic(path, text + "\n")
        return path


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(key))[:40]


# ----------------------------------------------------------------------------- the map
Scorer = Callable[[list[Any]], tuple[list[Any], dict[str, int]]]


@dataclass
class MapResult:
    """What `sharded_map` returns on rank 0: the records in input order, the summed counts, how many
    items were computed in this run and how many came from finished shards."""

    records: list[Any]
    counts: dict[str, int]
    computed: int
    resumed: int


def sharded_map(
    score: Scorer,
    items: Sequence[Any],
    keys: Sequence[str],
    peers: Peers,
    *,
    shards: ShardFiles | None = None,
    resume: bool = False,
    shard_size: int | None = None,
) -> MapResult | None:
    """Score `items` across the ranks; rank 0 gets every record in input order (others get None).

    `score(list of items) -> (one JSON-able record per item, counts)`. `keys` name the items (unique
    strings). With `shards`, each rank writes a shard file after every block of at most `shard_size`
    items it scores; with `resume` too, items in finished shard files are not scored again (without
    it, rank 0 first removes the shard files of these settings).
    """
    if len(keys) != len(items) or len(set(keys)) != len(keys):
        raise ValueError("sharded_map needs one unique key per item")
    done: dict[str, Any] = {}
    counts: dict[str, int] = {}
    if shards is not None and peers.is_main:
        if resume:
            done, counts, _ = shards.load()
        else:
            shards.clear()
    finished = set(peers.broadcast(sorted(done) if peers.is_main else None))  # rank 0's view of the files
    pending = [i for i, k in enumerate(keys) if k not in finished]
    a, b = shard_bounds(len(pending), peers.rank, peers.world_size)
    mine = pending[a:b]
    fresh: dict[str, Any] = {}
    mine_counts: dict[str, int] = {}
    for c0, c1 in chunks(len(mine), shard_size if shards is not None else None):
        block = mine[c0:c1]
        records, block_counts = score([items[i] for i in block])
        if len(records) != len(block):
            raise ValueError(f"the scorer returned {len(records)} records for {len(block)} items")
        records = json.loads(json.dumps(records, default=str))  # as a shard file gives them back
        by_key = {keys[i]: r for i, r in zip(block, records)}
        if shards is not None:
            shards.write(by_key, block_counts)
        fresh.update(by_key)
        for k, v in block_counts.items():
            mine_counts[k] = mine_counts.get(k, 0) + int(v)
    parts = peers.gather((fresh, mine_counts))
    if parts is None:
        return None
    for part, part_counts in parts:
        done.update(part)
        for k, v in part_counts.items():
            counts[k] = counts.get(k, 0) + v
    return MapResult([done[k] for k in keys], counts, computed=len(pending), resumed=len(keys) - len(pending))


__all__ = [
    "LaunchEnv",
    "launch_env",
    "rank_device",
    "shard_bounds",
    "shard",
    "chunks",
    "Peers",
    "fingerprint",
    "ShardFiles",
    "MapResult",
    "sharded_map",
    "HEARTBEAT_S",
    "DEAD_AFTER_S",
]
