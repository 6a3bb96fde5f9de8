"""The terminal display of `sumi generate`: control-character-safe text, width-aware wrapping, and
the two progress callbacks (a live redraw of the canvas on a terminal, a tqdm bar elsewhere).

Both follow each row's answer budget when the canvas sizes itself (`--max-new-tokens auto`,
`--grow`, `--shrink`): a row shows its current answer region, a grown row its new positions, and
a shrunk row ends with a mark saying how many of its positions ended (`sumi.denoising.RowBudgets`)."""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Callable

from ..denoising import RowBudgets

ENDED = "⏹"  # where a shrunk row's answer now ends


def sanitize(text: str, *, visible_whitespace: bool = False) -> str:
    """Replace control characters (terminal escapes among them) with U+FFFD; with
    `visible_whitespace`, newlines and tabs become ↵ and →."""
    out = []
    for ch in text:
        if visible_whitespace and ch == "\n":
            out.append("↵")
        elif visible_whitespace and ch in "\t\r":
            out.append("→" if ch == "\t" else "")
        elif ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"):
            out.append(ch)
        else:
            out.append("\ufffd")
    return "".join(out)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap_by_width(text: str, width: int) -> list[str]:
    """Hard-wrap `text` (no newlines) into lines of at most `width` terminal columns."""
    lines: list[str] = []
    line: list[str] = []
    used = 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width and line:
            lines.append("".join(line))
            line, used = [], 0
        line.append(ch)
        used += w
    lines.append("".join(line))
    return lines


def write_text(stream, text: str) -> None:
    """Write `text`, with characters the stream cannot encode as backslash escapes."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        enc = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(enc, errors="backslashreplace").decode(enc))


class _Regions:
    """Each row's answer region `(start, end)` in canvas columns, following its budget."""

    def __init__(self, regions: list[tuple[int, int]]):
        self.starts = [a for a, _ in regions]
        self.budgets = RowBudgets([b - a for a, b in regions])

    def update(self, info: dict) -> list[tuple[int, int]]:
        self.budgets.update(info)
        return [(a, a + n) for a, n in zip(self.starts, self.budgets.budgets)]

    def ended(self, row: int) -> int:
        """How many of the row's positions ended (it shrank) since its denoising started."""
        widest = self.budgets.widest or self.budgets.budgets
        return widest[row] - self.budgets.budgets[row]


def _step_stats(info: dict, regions: list[tuple[int, int]], previous) -> tuple[int | None, float]:
    """Tokens changed in the answer regions since `previous` (a canvas of the same shape, else None)
    and the mean top-1 probability over the rows."""
    z = info["z"]
    changed = None
    if previous is not None and previous.shape == z.shape:
        changed = sum(int((z[i, a:b] != previous[i, a:b]).sum()) for i, (a, b) in enumerate(regions))
    conf = [info["top1_prob"][i, a:b].float().mean().item() for i, (a, b) in enumerate(regions) if b > a]
    return changed, sum(conf) / max(len(conf), 1)


class LiveCanvas:
    """`progress_callback` that redraws the decoded generated region of every row after each step,
    with ANSI escapes (cursor up + clear), plus a step counter. For terminals. `regions`: each row's
    answer columns `(start, end)` before the first step; they follow the rows' budgets."""

    def __init__(
        self,
        stream,
        decode: Callable[[list[int]], str],
        regions: list[tuple[int, int]],
        size: tuple[int, int] | None = None,
    ):
        self.stream, self.decode, self.regions = stream, decode, list(regions)
        self._regions = _Regions(regions)
        self.size = size
        self.drawn = 0
        self.previous = None

    def __call__(self, info: dict) -> None:
        z = info["z"]
        cols, rows = self.size or tuple(shutil.get_terminal_size((100, 30)))
        cols = max(cols, 20)
        self.regions = self._regions.update(info)
        changed, mean_conf = _step_stats(info, self.regions, self.previous)
        self.previous = z.detach().clone()
        total = sum(b - a for a, b in self.regions)
        header = (
            f"step {info['step'] + 1}/{info['num_steps']}  log-SNR {info['log_snr_s']:+.2f}  "
            f"changed {'-' if changed is None else changed}/{total}  "
            f"mean top-1 p {mean_conf:.2f}"
        )
        B = len(self.regions)
        budget = max(rows - 2, 2)  # lines for the rows under the header (keep the frame on screen)
        shown = B if B <= budget else budget - 1
        per_row = max(1, budget // max(shown, 1))
        lines = [wrap_by_width(header, cols - 1)[0]]
        for i in range(shown):
            a, b = self.regions[i]
            text = sanitize(self.decode(z[i, a:b].tolist()), visible_whitespace=True)
            ended = self._regions.ended(i)
            if ended:
                text += f" {ENDED} {ended} ended"
            prefix = f"[{i + 1}] " if B > 1 else ""
            wrapped = wrap_by_width(prefix + text, cols - 1)
            if len(wrapped) > per_row:
                wrapped = wrapped[:per_row]
                wrapped[-1] = wrapped[-1][:-1] + "…"
            lines.extend(wrapped)
        if shown < B:
            lines.append(f"... {B - shown} more rows")
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")  # back to the first line of the previous frame
        out.append("\x1b[J")  # clear it and everything below
        out.append("".join(line + "\n" for line in lines))
        write_text(self.stream, "".join(out))
        self.stream.flush()
        self.drawn = len(lines)


class BarProgress:
    """`progress_callback` driving a tqdm bar on stderr; with `stats`, shows tokens changed in the
    generated region and the mean top-1 probability after each step."""

    def __init__(self, total: int, regions: list[tuple[int, int]], stats: bool = False, stream=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, desc="denoising", unit="step", file=stream or sys.stderr, leave=True, dynamic_ncols=True
        )
        self.regions, self.stats, self.previous = list(regions), stats, None
        self._regions = _Regions(regions)

    def __call__(self, info: dict) -> None:
        self.regions = self._regions.update(info)
        if self.stats:
            changed, mean_conf = _step_stats(info, self.regions, self.previous)
            self.previous = info["z"].detach().clone()
            postfix = dict(changed=changed or 0, top1=f"{mean_conf:.2f}", log_snr=f"{info['log_snr_s']:+.2f}")
            if "budgets" in info:  # a canvas that sizes itself: the answer positions the rows hold now
                postfix["budget"] = sum(b - a for a, b in self.regions)
            self.bar.set_postfix(**postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


__all__ = ["sanitize", "wrap_by_width", "write_text", "LiveCanvas", "BarProgress"]
