"""The step-driven denoising engine: canvases that advance one forward pass at a time.

A `CanvasJob` is the rows of one `generate()` call: their layout in a canvas tensor, their options
(sampler, schedule and the position in it, temperature and truncation), their random streams and
their exit rules. `DenoisingEngine.step()` runs ONE forward over the live rows of every job it holds
and advances each job by its own sampler. A Sumi network has no time input, so rows at different
steps, with different schedules, samplers, seeds and canvas lengths, share a forward with no
approximation: a job that owns its random streams (one generator per row) gives the same result
alone or among others. Jobs join at a step boundary and leave when finished or cancelled.

A job's life, in the order of this file: the prompt layout (`canvas_layout`), the initial canvas
(`CanvasJob.__init__`), one step (`CanvasJob.advance`), the canvas sizing (`_probe`, `_resize_rows`),
the exit rules (`_exit_rules`), the result (`CanvasJob.result`). `generate()` (generation_sumi.py) is a
driver of one job.

Canvases that size themselves (all off by default): with `max_new_tokens="auto"` the first forward(s)
probe a generous canvas and each row's answer budget is set to where the model puts EOS; with
`grow` a row whose answer presses against its EOS anchor gets fresh random tokens before the anchor;
with `shrink` a row whose first EOS (written by the model, not noise) has settled ends there, and
the columns after it leave the forwards. A row's canvas then always ends at its BOS anchor
(`skip_tail`), so its cost in a forward is its prompt + budget + 2 positions; each row's decisions
read only its own logits and canvas, and its fresh tokens come from its own random stream, so a job
stays batch-invariant.

Exported verbatim as a checkpoint's remote code: imports only torch, transformers and siblings.
"""

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from .sampling import (
    _Randomness,
    adaptive_step,
    ancestral_step,
    entropy_bounded_step,
    greedy_step,
    renoise,
    softmax_summary,
)

# How many past canvases `stop_on_cycle` compares against: cycles up to this period are caught.
# Greedy and adaptive at T = 0 settle into period-2 oscillations (two tokens swapping back and
# forth) far more often than into fixed points (measured in benchmarks/bench_early_exit.py).
CYCLE_WINDOW = 8

# Canvas sizing (issue 16 §3). auto: the budget is the first answer position where EOS holds at
# least AUTO_EOS_PROB of the probe's prediction, plus room: AUTO_MARGIN positions or AUTO_MARGIN_SHARE
# of the answer, whichever is more; never under AUTO_MIN (capped). See `auto_budget`. The floor keeps
# the BOS anchor of a one-token answer as far off as training canvases had it; the share gives long
# answers room to shift, as much again as the answer (both chosen on training instances of the
# instruct suite: benchmarks/tune_auto_canvas.py, benchmarks/results/tune_auto_canvas*_cpu2.md).
AUTO_EOS_PROB = 0.5
AUTO_MARGIN = 4
AUTO_MARGIN_SHARE = 1.0
AUTO_MIN = 16
# grow: a row grows when each of its last GROW_WINDOW answer positions is predicted as a non-EOS
# token with top-1 probability >= GROW_CONFIDENCE; it gains max(GROW_MIN, budget // 4) positions
# (up to its cap), and only in the first GROW_UNTIL of the run's moves (new tokens need steps to denoise).
GROW_WINDOW = 4
GROW_CONFIDENCE = 0.5
GROW_MIN = 4
GROW_UNTIL = 0.5


@dataclass
class SumiGenerationOutput(ModelOutput):
    """`sequences` `[B, L]`: prompt + text up to the first EOS (pad-filled); `lengths` `[B]`: each
    row's real length in `sequences` (prompt included); `canvas` `[B, S]`: the final canvas;
    `num_forwards`: forward calls actually run (fewer than the steps after an early stop);
    `row_forwards` `[B]`: how many of them each row took part in (rows leave the batch one by one
    with `early_stop_patience`); `row_positions` `[B]`: the positions each row fed to those forwards,
    summed (its attention keys: prompt + answer + anchors (+ tail), padding excluded), the cost a
    row paid; `budgets` `[B]`: each row's answer budget at the end (after auto / grow / shrink);
    `auto_budgets` `[B]`: the budgets the `max_new_tokens="auto"` probe chose (else None)."""

    sequences: torch.LongTensor | None = None
    canvas: torch.LongTensor | None = None
    num_forwards: int | None = None
    lengths: torch.LongTensor | None = None
    trajectory: "Trajectory | None" = None
    row_forwards: torch.LongTensor | None = None
    row_positions: torch.LongTensor | None = None
    budgets: torch.LongTensor | None = None
    auto_budgets: torch.LongTensor | None = None


@dataclass
class Trajectory:
    """What a run did, compactly (`generate(..., record_trajectory=True)`): the initial canvas and,
    per step, only the positions that changed, plus the denoiser's confidence and entropy.

    initial `[B, S]`; free `[B, S]` (positions the sampler could change at the start: a canvas that
    sizes itself changes them as rows grow and shrink, and its changes include the resizing); log_snrs: the N+1
    schedule; changes[k] = (rows, cols, new ids) of step k; top1_prob[k] / entropy[k] `[B, S]`
    float16 (untempered softmax of the logits step k saw); selected[k] `[B, tokens_per_step]`
    for the adaptive sampler, else None. `canvas(k)` rebuilds the canvas after step k (-1 = initial).
    """

    initial: torch.LongTensor
    free: torch.BoolTensor
    log_snrs: list
    changes: list
    top1_prob: list
    entropy: list
    selected: list

    @property
    def num_steps(self) -> int:
        return len(self.changes)

    def canvas(self, step: int = -1) -> torch.LongTensor:
        z = self.initial.clone()
        for rows, cols, values in self.changes[: step + 1]:
            z[rows, cols] = values
        return z

    def canvases(self) -> torch.LongTensor:
        """`[N + 1, B, S]`: the initial canvas, then the canvas after each step."""
        z, out = self.initial.clone(), [self.initial.clone()]
        for rows, cols, values in self.changes:
            z[rows, cols] = values
            out.append(z.clone())
        return torch.stack(out)


# ----------------------------------------------------------------------------- prompt layout
@dataclass
class CanvasLayout:
    """Where each row of a batch lives in the `[B, S]` canvas tensor (spec §6).

    Row i owns columns `[starts[i], starts[i] + canvas_length)`: its prompt (`row_prompt[i]` tokens,
    ending at column `prompt_len`), its answer (`budgets[i]` columns from `prompt_len`), then, with
    `anchors`, an EOS and a BOS, then the tail. Without `aligned` every row starts at column 0 and
    counts the left padding as prompt (the official layout)."""

    prompt_len: int
    canvas_length: int
    row_prompt: list[int]
    budgets: list[int]
    starts: list[int]
    anchors: bool
    aligned: bool

    @property
    def width(self) -> int:
        """S: the columns of the canvas tensor."""
        return max(self.starts) + self.canvas_length

    def answer_columns(self, row: int) -> tuple[int, int]:
        """Row `row`'s answer region `[P, P + budget)` in canvas-tensor columns."""
        return self.prompt_len, self.prompt_len + self.budgets[row]

    def anchor_columns(self) -> list[list[int]]:
        """Per row, the columns of its EOS and BOS anchors (empty without anchors)."""
        if not self.anchors:
            return [[] for _ in self.budgets]
        return [[self.prompt_len + n, self.prompt_len + n + 1] for n in self.budgets]


class RowBudgets:
    """Each row's answer budget as a progress callback follows it (for displays): `budgets` after the
    latest step (a sizing job's `info["budgets"]`; otherwise the layout's stay) and `widest`, the most
    each row has had since its denoising started (from the probe's choice with
    `max_new_tokens="auto"`), so that a display can show a shrunk row's dropped tail as ended.
    `budgets` at construction: the layout's (`CanvasLayout.budgets` before any step)."""

    def __init__(self, budgets: list[int]):
        self.budgets = list(budgets)
        self.widest: list[int] | None = None  # (set by the first step)

    def update(self, info: dict) -> list[int]:
        """Follow step `info`; returns each row's budget before that step."""
        if self.widest is None:  # the first step: it started from the probe's budgets, or the layout's
            self.budgets = list(info.get("auto_budgets") or self.budgets)
            self.widest = list(self.budgets)
        before = self.budgets
        self.budgets = list(info.get("budgets", before))
        self.widest = [max(w, n) for w, n in zip(self.widest, self.budgets)]
        return before


def canvas_layout(
    config,
    prompt_lens: list[int],
    prompt_len: int,
    max_new_tokens: int,
    canvas_length: int,
    *,
    anchors: bool,
    aligned: bool,
) -> CanvasLayout:
    """The layout `generate()` uses for prompts of `prompt_lens` real tokens left-padded to `prompt_len`:
    the canvas is capped at the model's positions, each answer budget at what fits before the anchors.
    Raises ValueError when a prompt leaves no room for an answer."""
    C = min(int(canvas_length), config.max_position_embeddings)
    reserve = 2 if anchors else 0
    row_prompt = list(prompt_lens) if aligned else [prompt_len] * len(prompt_lens)
    for i, p in enumerate(row_prompt):
        if p + reserve >= C:
            raise ValueError(
                f"prompt {i + 1} is {p} tokens and does not fit a canvas of {C} tokens"
                f"{' with the EOS/BOS anchors' if anchors else ''}: shorten it or raise canvas_length "
                f"(at most {config.max_position_embeddings} for this model)"
            )
    budgets = [max(1, min(int(max_new_tokens), C - p - reserve)) for p in row_prompt]
    starts = [prompt_len - p for p in row_prompt] if aligned else [0] * len(row_prompt)
    return CanvasLayout(prompt_len, C, row_prompt, budgets, starts, anchors, aligned)


def auto_budget(first_eos: int | None, cap: int) -> int:
    """The answer budget `max_new_tokens="auto"` gives a row whose probe put EOS first at answer
    position `first_eos` (None: nowhere): that many positions plus room, AUTO_MARGIN or
    AUTO_MARGIN_SHARE of them, whichever is more, at least AUTO_MIN, at most `cap` (also the budget
    when the probe saw no EOS)."""
    if first_eos is None:
        return cap
    room = max(AUTO_MARGIN, math.ceil(AUTO_MARGIN_SHARE * first_eos))
    return max(1, min(cap, max(AUTO_MIN, first_eos + room)))


def _per_row(value, B: int) -> list:
    """`value` for all rows, or a list with one entry per row."""
    if isinstance(value, (list, tuple)):
        if len(value) != B:
            raise ValueError(f"expected one value per row ({B} rows), got {len(value)}")
        return list(value)
    return [value] * B


def frozen_per_row(frozen, B: int) -> list[list[tuple[int, int]]]:
    """`[(pos, id), ...]` for all rows or one such list per row -> one list per row."""
    if frozen is None:
        return [[] for _ in range(B)]
    frozen = list(frozen)

    def is_pair(x) -> bool:
        return isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(v, int) for v in x)

    if all(is_pair(x) for x in frozen):
        return [[tuple(x) for x in frozen] for _ in range(B)]
    if len(frozen) == B and all(isinstance(r, (list, tuple)) and all(is_pair(x) for x in r) for r in frozen):
        return [[tuple(x) for x in r] for r in frozen]
    raise ValueError(
        f"`frozen` must be a list of (position, token_id) pairs for all rows, or one such list per row ({B} rows)"
    )


def _generators(seed, generator, B: int, device) -> list:
    """The random streams of a job: one generator per row (a list of seeds or generators), else one
    for the whole batch (the official way; None = torch's global stream)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != B:
            raise ValueError(f"generator is a list of {len(generator)} generators for {B} rows")
        return list(generator)
    if isinstance(seed, (list, tuple)):
        if len(seed) != B:
            raise ValueError(f"seed is a list of {len(seed)} seeds for {B} rows")
        return [torch.Generator(device=device).manual_seed(int(s)) for s in seed]
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    return [generator]


def _find_cycles(
    now: torch.Tensor, history: deque, pending: torch.Tensor, k: int, steps: int
) -> dict[int, torch.Tensor]:
    """stop_on_cycle, after step k: rows (among `pending` `[B]` bool) whose new canvas
    s_{k+1} = `now[r]` equals s_{k+1-p} = `history[-p][r]` for some p <= len(history) (the
    smallest) repeat with period p from i = k+1-p on, so after the last step they hold
    s_{i + (steps - i) % p}, still in `history`. Returns {row: that final canvas `[width]`}."""
    found: dict[int, torch.Tensor] = {}
    for p in range(1, len(history) + 1):
        hit = (pending & (now == history[-p]).all(-1)).nonzero().squeeze(-1).tolist()
        for r in hit:
            if r not in found:
                offset = (steps - (k + 1 - p)) % p
                found[r] = history[offset - p][r].clone()  # s_{k+1-p+offset}
    return found


@dataclass(frozen=True)
class Move:
    """One forward's worth of a job's plan: `kind` is the step taken with its logits ("ancestral",
    "correct", "adaptive", "greedy" or "entropy"), from log-SNR `log_snr_t` to the cleaner `log_snr_s`.
    A "correct" move first re-noises the canvas from `log_snr_s` back to `log_snr_t`."""

    kind: str
    log_snr_t: float
    log_snr_s: float


def plan_moves(sampler: str, log_snrs: list[float], *, corrector_steps: int = 0, greedy_tail: int = 0) -> list[Move]:
    """The forwards of a run, in order: one move per schedule step, each ancestral step of the
    predictor-corrector sampler followed by `corrector_steps` corrector moves at the level it reached,
    and the last `greedy_tail` moves replaced by argmax steps."""
    kind = {
        "ancestral": "ancestral",
        "predictor_corrector": "ancestral",
        "adaptive": "adaptive",
        "greedy": "greedy",
        "entropy_bounded": "entropy",
    }[sampler]
    moves = []
    for lam_t, lam_s in zip(log_snrs[:-1], log_snrs[1:]):
        moves.append(Move(kind, lam_t, lam_s))
        if sampler == "predictor_corrector":
            moves += [Move("correct", lam_t, lam_s)] * corrector_steps
    for i in range(max(0, len(moves) - greedy_tail), len(moves)):
        moves[i] = Move("greedy", moves[i].log_snr_t, moves[i].log_snr_s)
    return moves


# Columns a self-sizing job's forward is padded to a multiple of (masked keys) when the model is
# batch-invariant: its width moves with its budget, and only jobs of one forward width share a
# forward exactly, so nearby widths meet in one bucket (at most 15 masked columns per row).
WIDTH_MULTIPLE = 16


# ----------------------------------------------------------------------------- a job
class CanvasJob:
    """The rows of one `generate()` call, denoised one step at a time by a `DenoisingEngine`.

    Built from a prompt batch `input_ids` `[B, P]` (left-padded; `attention_mask` `[B, P]`) and the
    resolved, validated options `o` (see `SumiGenerationMixin.prepare_generation`). Holds the canvas
    `[B, S]`, the positions each row may change, its random streams and its exit state.
    """

    key_mask: torch.Tensor  # [B, width] bool: the attention keys of each row
    position_ids: torch.Tensor | None  # [B, width], or None when positions are the columns
    auto_budgets: list[int] | None  # the budgets the auto probe chose (None before it, or without auto)

    def __init__(
        self,
        model,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        o: dict,
        log_snrs: list,
        *,
        generator=None,
        tokenizer=None,
        progress_callback: Callable[[dict], Any] | None = None,
        record_trajectory: bool = False,
    ):
        cfg = model.config
        self.vocab_size, self.eos_id, self.bos_id = cfg.vocab_size, cfg.eos_token_id, cfg.bos_token_id
        self.pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
        self.options, self.tokenizer = o, tokenizer
        self.sampler, self.temperature = o["sampler"], o["temperature"]
        self.moves = plan_moves(
            self.sampler, log_snrs, corrector_steps=o["corrector_steps"], greedy_tail=o["greedy_tail"]
        )
        self.num_steps = len(self.moves)  # forwards, unless rows leave early
        # the level after each move (N + 1 entries for the one-move-per-step samplers)
        self.log_snrs = [log_snrs[0]] + [m.log_snr_s for m in self.moves]
        self.progress_callback = progress_callback
        self.input_ids, self.attention_mask = input_ids, attention_mask
        B, P = input_ids.shape
        self.num_rows, self.prompt_len = B, P
        self.steps_done, self.forwards = 0, 0
        self.done, self.cancelled = False, False
        self._finished_empty = o["max_new_tokens"] == 0
        if self._finished_empty:  # nothing to write: the result is the prompt
            self.done, self.layout, self.canvas = True, None, input_ids
            self.row_forwards = torch.zeros(B, dtype=torch.long)
            self.row_positions = torch.zeros(B, dtype=torch.long)
            self.budgets, self.auto_budgets = [0] * B, None
            return
        self.auto = o["max_new_tokens"] == "auto"
        self.grow, self.shrink = bool(o["grow"]), bool(o["shrink"])
        self.sizing = self.auto or self.grow or self.shrink  # (validated: anchors on, skip_tail implied)
        self.layout = canvas_layout(
            cfg,
            attention_mask.long().sum(-1).tolist(),
            P,
            (o["auto_max_new_tokens"] or o["canvas_length"]) if self.auto else o["max_new_tokens"],
            o["canvas_length"],
            anchors=bool(o["anchor_eosbos"]) and o["frozen"] is None,
            aligned=bool(o["align_rows"]),
        )
        self.budgets = self.layout.budgets  # (the same list: auto / grow / shrink change it in place)
        in_row = self._place_rows()
        self.canvas = self._initial_canvas(in_row, o["seed"], generator)
        free = self._free_positions(in_row, o["frozen"], o["denoise_end"])
        # columns fed to the model (a sizing row always ends at its BOS anchor)
        self.width = self._skip_tail(free) if o["skip_tail"] or self.sizing else self.layout.width
        # the full-width free / key / position tensors; `free`, `key_mask`, `position_ids` are views of
        # their first `width` columns (`_set_width`)
        self._free, self._keys, self._pos = free, self.key_mask, self.position_ids
        self._init_sizing(o)
        self._record_trajectory = record_trajectory
        self.trajectory = None
        if not self.probes_left:
            self._start_trajectory()
        self._set_width(self.width)
        self.width_multiple = (
            WIDTH_MULTIPLE if (o["skip_tail"] or self.sizing) and getattr(model, "batch_invariant", False) else None
        )
        self._init_exit_rules(o, record_trajectory)

    # ---- the initial canvas
    def _place_rows(self) -> torch.Tensor:
        """Each row's columns, positions and attention keys in the `[B, S]` canvas tensor; returns the
        `[B, S]` mask of the columns each row owns."""
        layout, device = self.layout, self.input_ids.device
        cols = torch.arange(layout.width, device=device)
        start = torch.tensor(layout.starts, device=device)[:, None]
        in_row = (cols >= start) & (cols < start + layout.canvas_length)
        self.position_ids = (cols - start).clamp(min=0) if layout.aligned else None
        self.key_mask = torch.cat([self.attention_mask.bool(), in_row[:, self.prompt_len :]], dim=1)
        return in_row

    def _initial_canvas(self, in_row: torch.Tensor, seed, generator) -> torch.Tensor:
        """The prompt, then one randint over the rest (spec §6), padding outside the rows; sets the
        job's random streams."""
        layout, device, (B, P) = self.layout, self.input_ids.device, self.input_ids.shape
        C, S, V = layout.canvas_length, layout.width, self.vocab_size
        gens = _generators(seed, generator, B, device)
        self.rng = _Randomness(gens, [(s, s + C) for s in layout.starts], device)
        if self.rng.per_row:
            init = _Randomness(gens, [(0, C - p) for p in layout.row_prompt], device).randint(V, B, S - P)
        else:
            init = torch.randint(0, V, (B, S - P), generator=gens[0], device=device)
        canvas = torch.cat([self.input_ids, init], dim=1)
        in_prompt = torch.arange(S, device=device) < P
        return torch.where(in_row | in_prompt, canvas, torch.full_like(canvas, self.pad_id or 0))

    def _free_positions(self, in_row: torch.Tensor, frozen, denoise_end) -> torch.Tensor:
        """`[B, S]` bool: the answer and tail columns, less the pinned ones (EOS/BOS anchors or
        `frozen`, written into the canvas here) and those from `denoise_end` on."""
        layout, B = self.layout, self.num_rows
        C, V, starts = layout.canvas_length, self.vocab_size, layout.starts
        free = in_row & (torch.arange(layout.width, device=in_row.device) >= self.prompt_len)
        pinned = frozen_per_row(frozen, B)
        if layout.anchors:
            if self.eos_id is None or self.bos_id is None:
                raise ValueError("anchor_eosbos needs eos_token_id and bos_token_id in the config")
            pinned = [
                [(p + n, self.eos_id), (p + n + 1, self.bos_id)] for p, n in zip(layout.row_prompt, layout.budgets)
            ]
        ends = _per_row(denoise_end, B)
        for i in range(B):
            if ends[i] is not None:
                if not isinstance(ends[i], int) or ends[i] < 0:
                    raise ValueError(f"denoise_end must be a non-negative int (or one per row), got {ends[i]!r}")
                free[i, starts[i] + ends[i] :] = False
            for pos, tok in pinned[i]:
                if not 0 <= pos < C or not 0 <= tok < V:
                    raise ValueError(
                        f"frozen entry ({pos}, {tok}) of row {i} is outside the canvas "
                        f"[0, {C}) or the vocabulary [0, {V})"
                    )
                if pos < layout.row_prompt[i]:
                    raise ValueError(
                        f"frozen entry ({pos}, {tok}) of row {i} lies inside the prompt "
                        f"(positions [0, {layout.row_prompt[i]})): pin answer positions only"
                    )
                self.canvas[i, starts[i] + pos] = tok
                free[i, starts[i] + pos] = False
        return free

    def _skip_tail(self, free: torch.Tensor) -> int:
        """skip_tail: each row's forward ends at its BOS anchor; the columns after it are masked out of
        attention (rows of an aligned batch end at different columns) and never change. Returns the
        columns fed to the model."""
        layout = self.layout
        if not layout.anchors:
            raise ValueError("skip_tail needs the EOS/BOS anchors (anchor_eosbos=True and no `frozen`)")
        self.row_ends = [s + p + n + 2 for s, p, n in zip(layout.starts, layout.row_prompt, layout.budgets)]
        for i, e in enumerate(self.row_ends):
            free[i, e:] = False
            self.key_mask[i, e:] = False
        self.rng.spans = [(s, e) for s, e in zip(layout.starts, self.row_ends)]
        return max(self.row_ends)

    def _set_width(self, width: int) -> None:
        """Feed the first `width` columns of the canvas to the next forwards."""
        self.width = width
        self.free, self.key_mask = self._free[:, :width], self._keys[:, :width]
        self.position_ids = None if self._pos is None else self._pos[:, :width]

    def _start_trajectory(self) -> None:
        """The trajectory starts from the canvas the denoising starts from (after an auto probe)."""
        if self._record_trajectory:  # (clones: on CPU `.cpu()` returns the same tensor, updated in place)
            self.trajectory = Trajectory(
                self.canvas.cpu().clone(), self._free.cpu().clone(), self.log_snrs, [], [], [], []
            )

    # ---- canvas sizing: state
    def _init_sizing(self, o: dict) -> None:
        """auto / grow / shrink: the probe forwards still to run, each row's growth cap, its first EOS."""
        B, layout = self.num_rows, self.layout
        self.probes_left = int(o["auto_probe_steps"]) if self.auto else 0
        self.auto_budgets = None
        fits = [layout.canvas_length - p - 2 for p in layout.row_prompt]  # the most a row's answer can hold
        self.grow_caps = [min(int(o["grow_max"] or f), f) for f in fits] if self.grow else list(self.budgets)
        self.shrink_patience = int(o["shrink_patience"])
        self.grow_until = int(self.num_steps * GROW_UNTIL) if self.grow else 0  # moves that may grow a row
        self.first_eos, self.eos_age, self.shrunk = [-1] * B, [0] * B, [False] * B
        # the columns a progress callback sees: every column any row may ever feed (a fixed shape)
        self.frame_width = (
            max(
                s + p + max(n, c) + 2
                for s, p, n, c in zip(layout.starts, layout.row_prompt, self.budgets, self.grow_caps)
            )
            if self.sizing
            else self.width
        )
        self._probe_start = self.canvas.clone() if self.probes_left > 1 else None

    # ---- exit rules: state
    def _init_exit_rules(self, o: dict, record_trajectory: bool) -> None:
        B, device = self.num_rows, self.canvas.device
        self.patience = o["early_stop_patience"]
        self.cycle_exit = bool(o["stop_on_cycle"])
        # rows leave the batch one by one only when nothing records every row at every step
        self.settle_exit = self.sampler == "entropy_bounded"  # a row ends once all of it is accepted and still
        self.per_row_exit = (
            ((self.patience is not None and self.patience > 0) or self.cycle_exit or self.settle_exit)
            and not record_trajectory
            and self.progress_callback is None
        )
        self.settled = torch.zeros(B, dtype=torch.bool, device=device)
        self.unchanged = torch.zeros(B, dtype=torch.long, device=device)  # consecutive steps without a change
        self.active = torch.ones(B, dtype=torch.bool, device=device)  # rows still in the batch
        self.row_forwards = torch.zeros(B, dtype=torch.long, device=device)
        self.row_positions = torch.zeros(B, dtype=torch.long, device=device)
        # canvases after steps k+1-CYCLE_WINDOW .. k (oldest first), for stop_on_cycle
        self.history = self._new_history() if self.cycle_exit else None
        self.finals: dict[int, torch.Tensor] = {}  # stop_on_cycle with every row kept: each row's last canvas

    # ---- one step
    def rows_in(self) -> torch.Tensor | None:
        """The rows still being denoised (indices), or None for all of them."""
        return None if bool(self.active.all()) else self.active.nonzero().squeeze(-1)

    @property
    def forward_width(self) -> int:
        """The columns of the next forward: `width`, or with `width_multiple` (a self-sizing job of a
        batch-invariant model) `width` rounded up to it within the canvas; the columns past `width`
        are masked keys, their logits dropped."""
        m, w = self.width_multiple, self.width
        return w if m is None else min(-(-w // m) * m, self._keys.shape[1])

    def forward_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """What this job feeds the next forward: canvas `[b, W]`, key mask `[b, W]` bool and position
        ids `[b, W]` (None: positions are the columns) for its rows still in (W: `forward_width`)."""
        rows, W = self.rows_in(), self.forward_width
        pick = (lambda x: x) if rows is None else (lambda x: x.index_select(0, rows))
        pos = None if self._pos is None else pick(self._pos[:, :W])
        keys = self.key_mask
        if W > self.width:  # the padding columns: masked keys for every row
            keys = torch.cat([keys, keys.new_zeros(keys.shape[0], W - self.width)], dim=1)
        return pick(self.canvas[:, :W]), pick(keys), pos

    def before_forward(self) -> None:
        """A corrector move re-noises the canvas of the rows still in before its forward."""
        if self.probes_left:
            return
        move = self.moves[self.steps_done]
        if move.kind != "correct":
            return
        rows = self.rows_in()
        pick = (lambda x: x) if rows is None else (lambda x: x.index_select(0, rows))
        rng = self.rng if rows is None else self.rng.select(rows)
        noised = renoise(
            pick(self.canvas[:, : self.width]),
            pick(self.free),
            move.log_snr_s,
            move.log_snr_t,
            rng,
            vocab_size=self.vocab_size,
        )
        if rows is None:
            self.canvas[:, : self.width] = noised
        else:
            self.canvas[rows, : self.width] = noised

    def _count_forward(self, rows_in: torch.Tensor | None) -> None:
        """The forward just run: one more for the job and for each row in it, and its positions."""
        self.forwards += 1
        self.row_forwards += self.active.long()
        keys = self.key_mask.sum(-1)  # [B] the positions each row fed
        self.row_positions += torch.where(self.active, keys, 0)

    def advance(self, logits: torch.Tensor) -> None:
        """Move k of this job from the logits `[b, width, V']` of its rows still in: the sampler,
        the canvas sizing, the records, then the exit rules. (An auto probe's forward moves nothing.)"""
        logits = logits[:, : self.width]  # (a padded forward's extra columns)
        rows_in = self.rows_in()
        self._count_forward(rows_in)
        if self.probes_left:
            self._probe(logits)
            return
        k, move = self.steps_done, self.moves[self.steps_done]
        pick = (lambda x: x) if rows_in is None else (lambda x: x.index_select(0, rows_in))
        z, free_k = pick(self.canvas[:, : self.width]), pick(self.free)
        rng_k = self.rng if rows_in is None else self.rng.select(rows_in)
        before = self.canvas.clone() if self.sizing and self.trajectory is not None else None
        new, selected, accepted = self._sample(move, logits, z, free_k, rng_k)
        self._record(logits, z, new, selected)  # (z is a view of the canvas: before writing it)
        row_changed = (new != z).any(-1)
        if rows_in is None:
            self.canvas[:, : self.width] = new
        else:
            self.canvas[rows_in, : self.width] = new
        if self.sizing:
            resized = self._resize_rows(k, logits, rows_in)
            if resized:  # a resized row changed (new tokens, moved anchors): not unchanged, not settled
                hit = torch.zeros_like(self.active)
                hit[resized] = True
                row_changed |= pick(hit)
            if before is not None and self.trajectory is not None:  # the step's changes, resizing included
                rows, cols = (self.canvas != before).nonzero(as_tuple=True)
                self.trajectory.changes.append((rows.cpu(), cols.cpu(), self.canvas[rows, cols].cpu()))
        if rows_in is None:
            self.unchanged = torch.where(row_changed, 0, self.unchanged + 1)
        else:
            self.unchanged[rows_in] = torch.where(row_changed, 0, self.unchanged[rows_in] + 1)
        if accepted is not None:  # entropy-bounded: every free position accepted, and nothing moved
            settled = ~row_changed & ~(free_k & ~accepted).any(-1)
            if rows_in is None:
                self.settled = settled
            else:
                self.settled[rows_in] = settled
        if self.progress_callback is not None:
            self.progress_callback(self._progress_info(k, move, new, free_k, selected))
        self.steps_done += 1
        self.done = self.steps_done == self.num_steps or self._exit_rules(k)

    def _progress_info(self, k: int, move: Move, new, free_k, selected) -> dict:
        """What `progress_callback` receives after move k. A sizing job shows `frame_width` columns at
        every step (a fixed shape while rows grow and shrink): the canvas after the step, the top-1
        prediction and the step's free positions (zeros / False outside the columns just fed) and
        each row's current answer budget (`budgets`)."""
        top1_z, top1_prob = self._summary["argmax"], self._summary["max"]
        if self.sizing:
            pad = (0, self.frame_width - free_k.shape[1])
            new = self.canvas[:, : self.frame_width]  # (every row is in: callbacks keep all rows)
            top1_z, top1_prob = torch.nn.functional.pad(top1_z, pad), torch.nn.functional.pad(top1_prob, pad)
            free_k = torch.nn.functional.pad(free_k, pad, value=False)
        info = dict(
            step=k,
            num_steps=self.num_steps,
            log_snr_t=move.log_snr_t,
            log_snr_s=move.log_snr_s,
            z=new,
            top1_z=top1_z,
            top1_prob=top1_prob,
            noise_mask=free_k,
            selected_pos=selected,
        )
        if self.sizing:
            info["budgets"] = list(self.budgets)
            if self.auto_budgets is not None:  # (what the denoising started from)
                info["auto_budgets"] = list(self.auto_budgets)
        return info

    # ---- canvas sizing
    def _probe(self, logits: torch.Tensor) -> None:
        """A forward of the auto probe on the canvas laid out with the largest budget. Between probe
        forwards the canvas takes the argmax (a draft); after the last, each row's budget becomes the
        first answer position where EOS holds >= AUTO_EOS_PROB, plus room (`auto_budget`), and the
        denoising starts from the initial random canvas of that size."""
        self.probes_left -= 1
        if self.probes_left:
            z = self.canvas[:, : self.width]
            self.canvas[:, : self.width] = greedy_step(logits, z, self.free, vocab_size=self.vocab_size)
            return
        if self._probe_start is not None:
            self.canvas, self._probe_start = self._probe_start, None
        P, n_max = self.prompt_len, max(self.budgets)
        answer = logits[:, P : P + n_max, : self.vocab_size]
        eos = torch.full(answer.shape[:2], self.eos_id, dtype=torch.long, device=answer.device)
        p_eos = softmax_summary(answer, eos)["at_z"]  # [B, n_max] the probability of EOS there
        chosen = []
        for i, n in enumerate(list(self.budgets)):
            hits = (p_eos[i, :n] >= AUTO_EOS_PROB).nonzero()
            budget = auto_budget(int(hits[0]) if hits.numel() else None, n)
            chosen.append(budget)
            if budget != n:
                self._resize(i, budget)
        self.auto_budgets = chosen
        self._set_width(max(self.row_ends))
        self._start_trajectory()
        if self.cycle_exit:  # the cycle history starts from the canvas the denoising starts from
            self.history = self._new_history()

    def _resize(self, i: int, budget: int) -> None:
        """Row i's answer becomes `budget` positions: its EOS and BOS anchors move to the new end. The
        positions a longer answer gains get fresh random tokens from the row's own stream; the columns
        after a shorter row's BOS anchor leave its forwards (they keep their last tokens)."""
        a, n, s = self.prompt_len, self.budgets[i], self.layout.starts[i]
        old_end, end = a + n, a + budget
        if budget > n:
            self.canvas[i, old_end:end] = self.rng.row_randint(i, self.vocab_size, budget - n)
            self._free[i, old_end:end] = True
            self._keys[i, old_end + 2 : end + 2] = True
        else:
            self._free[i, end:] = False
            self._keys[i, end + 2 :] = False
        self.canvas[i, end], self.canvas[i, end + 1] = self.eos_id, self.bos_id
        self._free[i, end : end + 2] = False
        self.budgets[i] = budget
        self.row_ends[i] = end + 2
        self.rng.spans[i] = (s, end + 2)

    def _resize_rows(self, k: int, logits: torch.Tensor, rows_in: torch.Tensor | None) -> list[int]:
        """After move k (the canvas updated, `logits` `[b, width, V']` the forward's): shrink each row
        whose first EOS in the answer (one the model's argmax also puts there: a random initial EOS
        does not count) sat at the same position for more than `shrink_patience` steps to end there; grow each row whose last GROW_WINDOW answer positions are confidently non-EOS.
        Returns the rows resized."""
        rows = list(range(self.num_rows)) if rows_in is None else rows_in.tolist()
        P, V, eos = self.prompt_len, self.vocab_size, self.eos_id
        may_grow = self.grow and k < self.grow_until
        resized = []
        for r, i in enumerate(rows):
            n = self.budgets[i]
            if self.shrink:  # the first EOS of the answer that the model predicts there too (not noise)
                said = logits[r, P : P + n, :V].argmax(-1) == eos
                hits = ((self.canvas[i, P : P + n] == eos) & said).nonzero()
                e = int(hits[0]) if hits.numel() else -1
                self.eos_age[i] = 0 if e < 0 else (self.eos_age[i] + 1 if e == self.first_eos[i] else 1)
                self.first_eos[i] = e
                if e >= 0 and self.eos_age[i] > self.shrink_patience and max(1, e) < n:
                    self._resize(i, max(1, e))
                    self.shrunk[i] = True
                    resized.append(i)
                    continue
            if may_grow and not self.shrunk[i] and n < self.grow_caps[i]:
                w = min(GROW_WINDOW, n)
                top, arg = torch.softmax(logits[r, P + n - w : P + n, :V].float(), dim=-1).max(-1)
                if bool(((top >= GROW_CONFIDENCE) & (arg != eos)).all()):
                    self._resize(i, min(self.grow_caps[i], n + max(GROW_MIN, n // 4)))
                    resized.append(i)
        if resized:
            self._set_width(max(self.row_ends))
        return resized

    def _sample(self, move: Move, logits, z, free, rng):
        """The step of `move` on canvas z `[b, width]`: the new canvas, the adaptive sampler's selected
        positions (else None) and the entropy-bounded sampler's accepted positions (else None)."""
        o, V = self.options, self.vocab_size
        filters = dict(temperature=self.temperature, top_k=o["top_k"], top_p=o["top_p"], min_p=o["min_p"])
        if move.kind in ("ancestral", "correct"):
            return (
                ancestral_step(logits, z, free, move.log_snr_t, move.log_snr_s, rng, vocab_size=V, **filters),
                None,
                None,
            )
        if move.kind == "adaptive":
            new, selected = adaptive_step(
                logits, z, free, rng, vocab_size=V, tokens_per_step=o["tokens_per_step"], **filters
            )
            return new, selected, None
        if move.kind == "entropy":
            new, accepted = entropy_bounded_step(
                logits, z, free, rng, vocab_size=V, entropy_bound=o["entropy_bound"], **filters
            )
            return new, None, accepted
        return greedy_step(logits, z, free, vocab_size=V), None, None

    def _record(self, logits, z, new, selected) -> None:
        """The trajectory's entry for this step (a sizing job adds its changes after resizing), and
        the summary the progress callback reads."""
        self._summary = None
        if self.trajectory is None and self.progress_callback is None:
            return
        self._summary = s = softmax_summary(
            logits[..., : self.vocab_size], z, top1=True, entropy=self.trajectory is not None
        )
        if self.trajectory is not None:  # (all rows are in the batch here, see per_row_exit)
            t, pad = self.trajectory, (0, self.canvas.shape[1] - z.shape[1])  # skipped tail: zeros (never free)
            if not self.sizing:
                rows, cols = (new != z).nonzero(as_tuple=True)
                t.changes.append((rows.cpu(), cols.cpu(), new[rows, cols].cpu()))
            t.top1_prob.append(torch.nn.functional.pad(s["max"], pad).half().cpu())
            t.entropy.append(torch.nn.functional.pad(s["entropy"], pad).half().cpu())
            t.selected.append(None if selected is None else selected.cpu())

    # ---- exit rules
    def _cycle_state(self) -> torch.Tensor:
        """`[B, W]`: what decides a row's future under a deterministic sampler: its canvas; for a sizing
        job its whole canvas, its budget and how long its first EOS has sat still (capped where it
        stops mattering: at that point the row has shrunk), so that a repeated state repeats its
        future, resizing included (growth is over by then: see `_new_history`)."""
        if not self.sizing:
            return self.canvas[:, : self.width]
        age = [min(a, self.shrink_patience + 1) if self.shrink else 0 for a in self.eos_age]
        extra = torch.tensor([self.budgets, age], dtype=self.canvas.dtype, device=self.canvas.device).T
        return torch.cat([self.canvas, extra], dim=1)

    def _new_history(self, k: int = -1) -> deque:
        """The cycle history holding the state after move k (-1: the start). A state from which a
        row may still grow (k + 1 < grow_until) is no anchor of a cycle: the moves after it differ."""
        states = [] if k + 1 < self.grow_until else [self._cycle_state().clone()]
        return deque(states, maxlen=CYCLE_WINDOW)

    def _exit_rules(self, k: int) -> bool:
        """After step k: rows that cycled or stopped changing leave (or, when every row must stay,
        the job ends once all have). Returns whether the job is finished."""
        if self.cycle_exit:
            if k + 1 < self.grow_until:  # rows may still grow: no cycle yet
                self.history = self._new_history(k)
                return self._other_exit_rules()
            now = self._cycle_state()
            pending = self.active.clone()
            pending[list(self.finals)] = False
            for r, final in _find_cycles(now, self.history, pending, k, self.num_steps).items():
                if self.per_row_exit:  # the row takes its last canvas now and leaves
                    if self.sizing:  # (its budget is the same all along a cycle: no resizing in it)
                        self.canvas[r] = final[: self.canvas.shape[1]]
                    else:
                        self.canvas[r, : self.width] = final
                    self.active[r] = False
                else:
                    self.finals[r] = final
            self.history.append(now.clone())
            # with callbacks or a trajectory every row stays in: stop at a step where each
            # row already holds its last canvas, so the records end on the result
            if len(self.finals) == self.num_rows and all(torch.equal(now[r], f) for r, f in self.finals.items()):
                return True
        return self._other_exit_rules()

    def _other_exit_rules(self) -> bool:
        """early_stop_patience and the entropy-bounded settling (see `_exit_rules`)."""
        if self.patience is not None and self.patience > 0:
            if self.per_row_exit:
                self.active &= self.unchanged < self.patience
            elif bool((self.unchanged >= self.patience).all()):
                return True
        if self.settle_exit:
            if self.per_row_exit:
                self.active &= ~self.settled
            elif bool(self.settled.all()):
                return True
        return self.per_row_exit and not bool(self.active.any())

    # ---- result
    def result(self) -> SumiGenerationOutput:
        """The output of `generate()`: with `align_rows`, `.canvas` holds each row's own C columns (as
        if it ran alone); `.sequences` is cut at the first EOS (and at the stop strings)."""
        if self._finished_empty:
            B, P = self.input_ids.shape
            return SumiGenerationOutput(
                sequences=self.input_ids,
                canvas=self.input_ids,
                num_forwards=0,
                lengths=torch.full((B,), P, dtype=torch.long),
                row_forwards=self.row_forwards,
                row_positions=self.row_positions,
                budgets=torch.zeros(B, dtype=torch.long),
            )
        layout, canvas, pad_id = self.layout, self.canvas, self.pad_id if self.pad_id is not None else 0
        budgets = torch.tensor(self.budgets, dtype=torch.long)
        auto = None if self.auto_budgets is None else torch.tensor(self.auto_budgets, dtype=torch.long)
        C = layout.canvas_length
        canvas_out = (
            torch.stack([canvas[i, s : s + C] for i, s in enumerate(layout.starts)]) if layout.aligned else canvas
        )
        sequences, lengths = trim_sequences(
            canvas, self.prompt_len, layout.budgets, self.eos_id, pad_id, bool(self.options["trim_at_eos"])
        )
        stops = self.options["stop_strings"]
        if stops:
            stops = [stops] if isinstance(stops, str) else list(stops)
            sequences, lengths = cut_at_stop_strings(sequences, lengths, self.prompt_len, self.tokenizer, stops, pad_id)
        return SumiGenerationOutput(
            sequences=sequences,
            canvas=canvas_out,
            num_forwards=self.forwards,
            lengths=lengths,
            trajectory=self.trajectory,
            row_forwards=self.row_forwards.cpu(),
            row_positions=self.row_positions.cpu(),
            budgets=budgets,
            auto_budgets=auto,
        )


def trim_sequences(
    canvas: torch.Tensor, prompt_len: int, gen_lens: list[int], eos_id: int | None, pad_id: int, trim_at_eos: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + generated tokens, each row cut at its first EOS after the prompt (EOS dropped) when
    `trim_at_eos`, else at its generation budget; right-padded with `pad_id`.
    Returns: sequences `[B, L]` and each row's length `[B]`."""
    rows = []
    for i, n in enumerate(gen_lens):
        gen = canvas[i, prompt_len : prompt_len + n + 1] if trim_at_eos else canvas[i, prompt_len : prompt_len + n]
        if trim_at_eos and eos_id is not None:
            hits = (gen == eos_id).nonzero()
            cut = int(hits[0]) if hits.numel() else n
            gen = gen[: min(cut, n)]
        rows.append(torch.cat([canvas[i, :prompt_len], gen]))
    width = max(r.numel() for r in rows)
    out = canvas.new_full((len(rows), width), pad_id)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out, torch.tensor([r.numel() for r in rows])


def cut_at_stop_strings(
    sequences: torch.Tensor, lengths: torch.Tensor, prompt_len: int, tokenizer, stop_strings: list[str], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each row before the first token whose decoded text contains the start of a stop string."""
    out, lengths = sequences.clone(), lengths.clone()
    for i in range(out.shape[0]):
        gen = out[i, prompt_len : int(lengths[i])].tolist()
        text = tokenizer.decode(gen)
        starts = [text.find(s) for s in stop_strings if s and s in text]
        if not starts:
            continue
        first = min(starts)
        keep = 0  # largest token prefix whose text ends at or before the stop string starts
        for j in range(1, len(gen) + 1):
            if len(tokenizer.decode(gen[:j])) > first:
                break
            keep = j
        out[i, prompt_len + keep :] = pad_id
        lengths[i] = prompt_len + keep
    return out, lengths


# ----------------------------------------------------------------------------- the engine
class DenoisingEngine:
    """Runs the jobs it holds one step at a time, the live rows of each canvas width in one forward.

    A job alone runs exactly as `generate()` always has. Jobs of one width share a forward: with the
    model's batch invariance on (`sumi.batch_invariance`), each row then gets the bits it gets alone.
    Jobs of different widths run in one forward per width then, since attention kernels sum over
    the keys in blocks that follow the width: a row right-padded with masked keys moves in its last
    bits. Without batch invariance nothing is exact anyway, and all rows share one forward,
    right-padded to the widest and masked (a masked key adds zero up to rounding).
    Not thread-safe: one thread calls `add`, `cancel` and `step`.
    """

    def __init__(self, model):
        self.model = model
        self.jobs: list[CanvasJob] = []
        self.forwards = 0

    @property
    def live_rows(self) -> int:
        return sum(int(j.active.sum()) for j in self.jobs)

    def add(self, job: CanvasJob) -> None:
        """Join at the next step boundary (a finished job is ignored)."""
        if not job.done:
            self.jobs.append(job)

    def cancel(self, job: CanvasJob) -> None:
        """Leave now: the job keeps its canvas as it is and is marked done and cancelled."""
        job.cancelled = job.done = True
        if job in self.jobs:
            self.jobs.remove(job)

    @torch.no_grad()
    def step(self) -> list[CanvasJob]:
        """One forward over the live rows of every job, each job advanced by its own sampler.
        Returns the jobs that finished in this step (they leave the engine)."""
        jobs = [j for j in self.jobs if not j.done]
        if not jobs:
            self.jobs = []
            return []
        model = self.model
        was_training = model.training
        model.eval()
        try:
            for job in jobs:
                job.before_forward()
            for group in self._groups(jobs):
                for job, part in zip(group, self._forward([j.forward_inputs() for j in group])):
                    job.advance(part)
                self.forwards += 1
        finally:
            model.train(was_training)
        finished = [j for j in jobs if j.done]
        self.jobs = [j for j in jobs if not j.done]
        return finished

    def _groups(self, jobs: list[CanvasJob]) -> list[list[CanvasJob]]:
        """The jobs that share a forward: all of them, or those of each width when exact."""
        if not getattr(self.model, "batch_invariant", False):
            return [jobs]
        by_width: dict[int, list[CanvasJob]] = {}
        for job in jobs:
            by_width.setdefault(job.forward_width, []).append(job)
        return list(by_width.values())

    def _forward(self, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
        """Logits `[b_j, w_j, V']` for each job's (canvas, key mask, position ids), from one forward over
        the jobs' rows stacked and right-padded to the widest."""
        if len(parts) == 1:
            z, mask, pos = parts[0]
            return [
                self.model(
                    input_ids=z, attention_mask=None if bool(mask.all()) else mask.long(), position_ids=pos
                ).logits
            ]
        W = max(z.shape[1] for z, _, _ in parts)
        device = parts[0][0].device
        cols = torch.arange(W, device=device)

        def right_pad(x: torch.Tensor, fill) -> torch.Tensor:
            return torch.nn.functional.pad(x, (0, W - x.shape[1]), value=fill)

        z = torch.cat([right_pad(z, 0) for z, _, _ in parts])
        mask = torch.cat([right_pad(m, False) for _, m, _ in parts])
        pos = None
        if any(p is not None for _, _, p in parts):
            pos = torch.cat(
                [
                    cols.expand(z_.shape[0], W)
                    if p is None
                    else torch.cat([p, cols[p.shape[1] :].expand(p.shape[0], -1)], dim=1)
                    for z_, _, p in parts
                ]
            )
        logits = self.model(
            input_ids=z, attention_mask=None if bool(mask.all()) else mask.long(), position_ids=pos
        ).logits
        out, row = [], 0
        for z_j, _, _ in parts:
            out.append(logits[row : row + z_j.shape[0], : z_j.shape[1]])
            row += z_j.shape[0]
        return out


__all__ = [
    "CYCLE_WINDOW",
    "AUTO_EOS_PROB",
    "AUTO_MARGIN",
    "AUTO_MARGIN_SHARE",
    "AUTO_MIN",
    "auto_budget",
    "GROW_WINDOW",
    "GROW_CONFIDENCE",
    "GROW_MIN",
    "GROW_UNTIL",
    "SumiGenerationOutput",
    "Trajectory",
    "CanvasLayout",
    "RowBudgets",
    "canvas_layout",
    "frozen_per_row",
    "Move",
    "plan_moves",
    "CanvasJob",
    "DenoisingEngine",
    "trim_sequences",
    "cut_at_stop_strings",
]
