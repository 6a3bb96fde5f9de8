"""Optional native kernels, compiled on first use with the system's C compiler.

`sink_attention(q, k, v, key_mask, scale)`: the off-by-one softmax attention of the model for bf16
inference on x86 CPUs with AVX512-BF16 (`sink_attention_avx512bf16.c`). PyTorch's CPU flash kernel
runs bf16 at about its fp32 speed on such CPUs when they lack AMX; this one uses the bf16
dot-product instruction (2.2x SDPA there). On CPUs with AMX, SDPA multiplies on the AMX tiles and is
the faster one (3.6-6x this kernel), so there the model keeps SDPA (measured in
`benchmarks/bench_attention.py`). `register()` (run by `import sumi`) adds "sumi_native" to the
model's attention registry (`modeling_sumi.ALL_ATTENTION_FUNCTIONS`), the default attention of Sumi
models when sumi is installed: the kernel where `use_kernel` says so, the model's SDPA path
elsewhere. The model file (also a checkpoint's standalone remote code) only knows the registry.

Everything else falls back to SDPA: other dtypes, gradients, CUDA, head dims that are not a
multiple of 64, CPUs without the instructions or with AMX, no compiler (`available()` says why the
kernel cannot run, `why_not_for(head_dim)` why the model would not use it). `SUMI_NATIVE_KERNELS=0`
turns the kernel off, `SUMI_NATIVE_KERNELS=1` uses it wherever it runs (AMX or not). The shared
library is built once into the sumi cache directory (`$SUMI_CACHE_DIR`, default
`~/.cache/sumi/kernels`), keyed by the source's hash, and loaded only from a folder of this user's
that no one else can write, with the sha256 it had when built (see `_build`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import torch

from ..modeling_sumi import SinkAttentionInterface, sdpa_sink_attention

SOURCE = Path(__file__).with_name("sink_attention_avx512bf16.c")
CFLAGS = ["-O3", "-mavx512f", "-mavx512bf16", "-mavx512bw", "-mavx512vl", "-mfma", "-fopenmp", "-shared", "-fPIC"]
CPU_FLAGS = ("avx512f", "avx512_bf16", "avx512bw", "avx512vl")
AMX_FLAG = "amx_bf16"

_lib: ctypes.CDLL | None = None
_why_not: str | None = None


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )


def _cpu_has_flags() -> bool:
    """Whether the CPU has the instructions the kernel needs."""
    return all(f in _cpu_flags() for f in CPU_FLAGS)


def _sdpa_is_faster() -> bool:
    """On CPUs with AMX, PyTorch's bf16 SDPA beats the kernel (unless SUMI_NATIVE_KERNELS=1 asks for it)."""
    return AMX_FLAG in _cpu_flags() and os.environ.get("SUMI_NATIVE_KERNELS") != "1"


def _private_folder(path: Path) -> Path | None:
    """`path`, created with mode 0700 if missing, if it is a real folder owned by this user that
    no one else can write (None otherwise: a library there could have been planted)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022 or not os.access(path, os.W_OK):
        return None
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trusted(lib: Path) -> bool:
    """Whether `lib` is a regular file of this user's, writable by no one else, whose sha256 is
    the one recorded when this process's code built it (``<lib>.sha256``)."""
    try:
        st = lib.lstat()
        recorded = lib.with_name(lib.name + ".sha256").read_text().strip()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022 and recorded == _sha256(lib)


def _compile(target: Path) -> None:
    """Build `target` (and its ``.sha256``) in its folder, atomically."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc) found")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # then an atomic rename
        built = Path(tmp) / target.name
        proc = subprocess.run([cc, *CFLAGS, "-o", str(built), str(SOURCE)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[-500:]}")
        os.chmod(built, 0o700)
        digest = Path(tmp) / (target.name + ".sha256")
        digest.write_text(_sha256(built) + "\n")
        os.replace(digest, target.with_name(target.name + ".sha256"))
        os.replace(built, target)


def _build() -> ctypes.CDLL:
    """Load the kernel, built once into a private folder: the sumi cache, else
    ``$TMPDIR/sumi-kernels-<uid>``, each only if this user owns it and no one else can write it,
    else a fresh ``mkdtemp`` folder (built for this process only). A library is loaded only if
    `_trusted` (owner, permissions and the sha256 recorded at build time); otherwise it is rebuilt."""
    from ..tokenization import cache_dir

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    name = f"sink_attention_{digest}.so"
    folder = _private_folder(cache_dir() / "kernels") or _private_folder(
        Path(tempfile.gettempdir()) / f"sumi-kernels-{os.getuid()}"
    )
    scratch = None
    if folder is None:
        folder = scratch = Path(tempfile.mkdtemp(prefix="sumi-kernels-"))
    try:
        target = folder / name
        if not _trusted(target):
            _compile(target)
        lib = ctypes.CDLL(str(target))
    finally:
        if scratch is not None:  # loaded (or failed): the mapping outlives the file
            shutil.rmtree(scratch, ignore_errors=True)
    fn = lib.sink_attention_bf16
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int] * 5 + [ctypes.c_float, ctypes.c_int]
    return lib


def available() -> bool:
    """Whether the native CPU kernel can run here (built on the first call). `why_not()` says why not."""
    global _lib, _why_not
    if _lib is not None:
        return True
    if _why_not is not None:
        return False
    if os.environ.get("SUMI_NATIVE_KERNELS", "1") == "0":
        _why_not = "turned off by SUMI_NATIVE_KERNELS=0"
    elif platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        _why_not = f"needs Linux on x86-64, not {platform.system()} on {platform.machine()}"
    elif not _cpu_has_flags():
        _why_not = f"the CPU lacks one of {', '.join(CPU_FLAGS)}"
    else:
        try:
            _lib = _build()
            return True
        except (OSError, RuntimeError) as e:
            _why_not = f"could not build the kernel: {e}"
    return False


def why_not() -> str | None:
    """Why `available()` is False (None when it is True or was not asked yet)."""
    return _why_not


def why_not_for(head_dim: int) -> str | None:
    """Why bf16 CPU inference of a model with this head dim would not use the kernel here (None: it would)."""
    if head_dim % 64:
        return f"head_dim {head_dim} is not a multiple of 64"
    if not available():
        return why_not()
    if _sdpa_is_faster():
        return "PyTorch's SDPA is faster on this CPU, which has AMX; SUMI_NATIVE_KERNELS=1 uses the kernel anyway"
    return None


def supports(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether `sink_attention` can take these inputs."""
    return (
        q.device.type == "cpu"
        and q.dtype == k.dtype == v.dtype == torch.bfloat16
        and q.dim() == 4
        and not (q.requires_grad or k.requires_grad or v.requires_grad)
        and q.shape[-1] % 64 == 0
        and available()
    )


def use_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the model's "sumi_native" attention runs the kernel on these inputs (else SDPA):
    it `supports` them and is the faster of the two on this CPU."""
    return supports(q, k, v) and not _sdpa_is_faster()


def sink_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """Off-by-one softmax attention, bf16, on CPU: q `[B, h, S, d]`, k/v `[B, k, S, d]`, key_mask
    `[B, S]` bool (True = attend) or None -> `[B, h, S, d]` bf16. Check `supports(q, k, v)` first."""
    if not supports(q, k, v):
        raise ValueError(
            "sink_attention needs bf16 CPU tensors without gradients, head dim a multiple of 64, "
            f"and the native kernel ({why_not() or 'available'})"
        )
    B, H, S, D = q.shape
    HK = k.shape[1]
    if k.shape != (B, HK, S, D) or v.shape != k.shape or H % HK:
        raise ValueError(
            f"q {tuple(q.shape)} and k/v {tuple(k.shape)}/{tuple(v.shape)} do not fit [B, h, S, d] "
            f"/ [B, k, S, d] with k dividing h"
        )
    mask = None if key_mask is None else key_mask.to(torch.uint8)
    return torch.ops.sumi.sink_attention(q, k, v, mask, float(scale))


# A registered op (not a bare ctypes call), so that torch.compile and the profiler see one opaque
# operation with a known output instead of tracing into the pointer arithmetic.
@torch.library.custom_op("sumi::sink_attention", mutates_args=())
def _sink_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    B, H, S, D = q.shape
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    mask = None if key_mask is None else key_mask.contiguous()
    out = torch.empty_like(q)
    failed = _lib.sink_attention_bf16(
        q.data_ptr(),
        k.data_ptr(),
        v.data_ptr(),
        0 if mask is None else mask.data_ptr(),
        out.data_ptr(),
        B,
        H,
        k.shape[1],
        S,
        D,
        scale,
        torch.get_num_threads(),
    )
    if failed:
        raise MemoryError(f"sink_attention: out of memory for B={B} h={H} S={S} d={D}")
    return out


@_sink_attention_op.register_fake
def _(q, k, v, key_mask, scale):
    return torch.empty_like(q, memory_format=torch.contiguous_format)


ATTENTION_NAME = "sumi_native"


def native_or_sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """The "sumi_native" attention: `sink_attention` where `use_kernel` says so (bf16 CPU inference
    without AMX), the model's `sdpa_sink_attention` elsewhere. Shapes as `sink_attention`."""
    if use_kernel(q, k, v):
        return sink_attention(q, k, v, key_mask, scale)
    return sdpa_sink_attention(q, k, v, key_mask, scale)


def register() -> None:
    """Make "sumi_native" an attention of Sumi models (`import sumi` does this). Cheap: the kernel
    is built at the first call that `supports`."""
    SinkAttentionInterface.register(ATTENTION_NAME, native_or_sdpa_attention)


__all__ = [
    "available",
    "why_not",
    "why_not_for",
    "supports",
    "use_kernel",
    "sink_attention",
    "ATTENTION_NAME",
    "native_or_sdpa_attention",
    "register",
]
