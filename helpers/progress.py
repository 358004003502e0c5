"""One progress display for the whole book: a bar in JupyterLab, a short plain line every N steps elsewhere.

Under papermill, nbval and `make book` (see `config.is_headless`) headless runs print deterministic text lines: no
rates, no ETA. In JupyterLab the bar is plain HTML updated in place (a display id), not a widget: a notebook saved and
reopened shows the bar where it stopped instead of "Error displaying widget: model not found". In a terminal, tqdm.
"""
from __future__ import annotations

import html
import sys
import time
from typing import Mapping

from .config import in_notebook_kernel, is_headless


def _format(logs: Mapping[str, float]) -> str:
    return " ".join(f"{name} {value:.4g}" for name, value in logs.items())


class HtmlBar:
    """A progress bar as HTML in a notebook's output, redrawn in place at most every `interval` seconds."""

    def __init__(self, total: int, desc: str, initial: int = 0, interval: float = 0.25):
        from IPython.display import display

        self.total, self.desc, self.n, self.interval = total, desc, initial, interval
        self.postfix = ""
        self._start = self._drawn = time.monotonic()
        self._handle = display(self.bundle(), raw=True, display_id=True)

    def bundle(self) -> dict[str, str]:
        """The bar's current text/plain and text/html representations."""
        seconds = time.monotonic() - self._start
        text = f"{self.desc}: {self.n}/{self.total} steps, {seconds:.0f} s"
        text += f", {self.postfix}" if self.postfix else ""
        bar = f'<progress value="{self.n}" max="{max(self.total, 1)}" style="width: 12em"></progress>'
        return {"text/plain": text, "text/html": f"<div>{bar} <code>{html.escape(text)}</code></div>"}

    def update(self, advanced: int) -> None:
        self.n += advanced
        if time.monotonic() - self._drawn >= self.interval or self.n >= self.total:
            self.refresh()

    def set_postfix_str(self, postfix: str, refresh: bool = False) -> None:
        self.postfix = postfix
        if refresh:
            self.refresh()

    def refresh(self) -> None:
        self._drawn = time.monotonic()
        if self._handle is not None:
            self._handle.update(self.bundle(), raw=True)

    def close(self) -> None:
        self.refresh()


class Progress:
    """Progress over `total` steps: `update(step, logs)` after each step, `close()` at the end."""

    def __init__(self, total: int, desc: str, every: int | None = None, start: int = 0,
                 enabled: bool = True, mode: str | None = None):
        self.total, self.desc, self.step = total, desc, start
        self.every = every or max(1, total // 4)
        self.enabled = enabled
        self.mode = mode or ("text" if is_headless() else "bar")
        self._bar = None
        if enabled and self.mode == "bar":
            if in_notebook_kernel():
                self._bar = HtmlBar(total, desc, initial=start)
            else:
                from tqdm import tqdm
                self._bar = tqdm(total=total, initial=start, desc=desc, leave=True, dynamic_ncols=True)
        elif self.mode not in ("bar", "text"):
            raise ValueError(f"mode={mode!r}: allowed values are 'bar', 'text' or None (automatic)")

    def update(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        """Record that `step` steps are done; print a line when a multiple of `every` (or the last) is reached."""
        advanced, self.step = step - self.step, step
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(advanced)
            if logs:
                self._bar.set_postfix_str(_format(logs), refresh=False)
        elif step % self.every == 0 or step == self.total:
            print(f"[{self.desc}] step {step}/{self.total}" + (f"  {_format(logs)}" if logs else ""),
                  file=sys.stdout, flush=True)

    def close(self) -> None:
        """Finish the bar (no-op in text mode)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(iterable, desc: str, total: int | None = None, every: int | None = None, enabled: bool = True):
    """Iterate with progress (a bar in JupyterLab, plain lines when headless)."""
    total = total if total is not None else len(iterable)
    with Progress(total, desc, every=every, enabled=enabled) as progress:
        for i, item in enumerate(iterable, start=1):
            yield item
            progress.update(i)
