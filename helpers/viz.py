"""Figures of the book: image grids, label maps in the papers' colour code, heatmaps, and scrubbable players.

Every player is a matplotlib `to_jshtml` animation: self-contained, works in the static book without a kernel, and
is the twin of a live ipywidgets slider. Its HTML id is derived from its content, so reruns give identical notebooks.
"""
from __future__ import annotations

import hashlib
import re
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib import animation
from torchvision.utils import make_grid

from .data.labels import HELEN_CLASSES, HELEN_COLOURS, ROI_COLOURS, ROI_NAMES, colourise, helen_to_roi_table


def helen_colour_map(labels: torch.Tensor) -> torch.Tensor:
    """HELEN label maps [..., H, W] -> RGB [..., 3, H, W], one shade per class."""
    return colourise(labels, [HELEN_COLOURS[name] for name in HELEN_CLASSES])


def roi_colour_map(labels: torch.Tensor) -> torch.Tensor:
    """HELEN label maps -> RGB in the papers' ROI code: hair blue, skin green, nose red, eyes orange, lips+mouth grey."""
    return roi_ids_colour_map(helen_to_roi_table()[labels.long()])


def roi_ids_colour_map(rois: torch.Tensor) -> torch.Tensor:
    """ROI id maps [..., H, W] (0 background, 1..5 = ROI_NAMES) -> RGB [..., 3, H, W] in the papers' ROI code."""
    return colourise(rois, [ROI_COLOURS[name] for name in ("background",) + ROI_NAMES])


def to_numpy_image(image: torch.Tensor):
    """[3, H, W] float in [0, 1] (or [H, W]) -> an array for imshow."""
    image = image.detach().float().cpu().clamp(0, 1)
    return image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Images [B, 3, H, W] (or [B, 1, H, W]) -> one grid image [3, H', W']."""
    return make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=pad_value)


def show_grid(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, size: float = 1.2):
    """Draw a grid of images without axes; returns the axes."""
    if ax is None:
        rows = (len(images) + nrow - 1) // nrow
        _, ax = plt.subplots(figsize=(size * nrow, size * rows))
    ax.imshow(to_numpy_image(grid(images, nrow=nrow)), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_rows(rows: Sequence[tuple[str, torch.Tensor]], size: float = 1.3, cmap: str | None = None,
              legend: Mapping[str, tuple[int, int, int]] | None = None):
    """One figure with a named row per batch of images (all batches the same length); `legend` (name -> RGB in
    0..255, e.g. labels.ROI_COLOURS) adds a colour key under the rows."""
    count = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), count, figsize=(size * count, size * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(count):
            ax = axes[r, c]
            image = images[c]
            if image.dim() == 3 and image.shape[0] == 1:
                image = image[0]
            ax.imshow(to_numpy_image(image), cmap=cmap if image.dim() == 2 else None, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
    fig.tight_layout()
    if legend:
        add_colour_key(fig, legend)
    return fig


def add_colour_key(fig, colours: Mapping[str, tuple[int, int, int]]) -> None:
    """A one-row legend of coloured patches under a figure (name -> RGB in 0..255)."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=tuple(v / 255 for v in rgb), edgecolor="0.5", label=name) for name, rgb in colours.items()]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), frameon=False,
               fontsize=9)


def heatmap(matrix, row_names: Sequence[str], col_names: Sequence[str], ax=None, cmap: str = "RdBu_r",
            vmin: float | None = None, vmax: float | None = None, annotate: bool = False, fmt: str = "{:.2f}",
            title: str | None = None):
    """A labelled heatmap of a 2-D array (e.g. correlations, an activeness map)."""
    matrix = torch.as_tensor(matrix).float().cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(0.35 * len(col_names) + 2, 0.35 * len(row_names) + 1.5))
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(col_names)), col_names, rotation=90)
    ax.set_yticks(range(len(row_names)), row_names)
    if annotate:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, fmt.format(matrix[i, j]), ha="center", va="center", fontsize=7)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax


def player(frames: torch.Tensor, captions: Sequence[str] | None = None, fps: int = 6, size: float = 4.0,
           nrow: int | None = None):
    """A scrubbable player (HTML) of frames [T, B, 3, H, W] or [T, 3, H, W]; the static twin of a live slider."""
    from IPython.display import HTML

    if frames.dim() == 5:
        frames = torch.stack([grid(f, nrow=nrow or f.shape[0]) for f in frames])
    height, width = frames.shape[-2:]
    fig, ax = plt.subplots(figsize=(size * width / max(height, width) * 1.0 + 0.2, size * height / max(height, width)))
    ax.set_axis_off()
    shown = ax.imshow(to_numpy_image(frames[0]), interpolation="nearest")
    title = ax.set_title(captions[0] if captions else "")
    fig.tight_layout()

    def draw(t):
        shown.set_data(to_numpy_image(frames[t]))
        title.set_text(captions[t] if captions else "")
        return shown, title

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 // fps, blit=False)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(stable_ids(offline_controls(html)))


# matplotlib's jshtml links Font Awesome from a CDN for its button icons; the book works offline, so the link goes
# and each icon becomes a plain character (the buttons keep their titles).
_CDN_LINK = re.compile(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">\s*')
_ICONS = {"fa fa-minus": "\u2212", "fa fa-fast-backward": "\u21e4", "fa fa-step-backward": "\u2039",
          "fa fa-play fa-flip-horizontal": "\u25c0", "fa fa-pause": "\u275a\u275a", "fa fa-play": "\u25b6",
          "fa fa-step-forward": "\u203a", "fa fa-fast-forward": "\u21e5", "fa fa-plus": "+"}


def offline_controls(html: str) -> str:
    """A jshtml player without network resources: no Font Awesome link, its button icons as plain characters."""
    html = _CDN_LINK.sub("", html)
    for icon, text in _ICONS.items():
        html = html.replace(f'<i class="{icon}"></i>', text)
    return html


def stable_ids(html: str) -> str:
    """Replace the random animation id of matplotlib's jshtml by a hash of the content."""
    ids = set(re.findall(r"_anim_img([0-9a-f]{32})", html))
    for old in ids:
        html = html.replace(old, hashlib.sha1(html.replace(old, "").encode()).hexdigest()[:32])
    return html


__all__ = ["add_colour_key", "helen_colour_map", "roi_colour_map", "to_numpy_image", "grid", "show_grid",
           "show_rows", "heatmap", "player", "offline_controls", "stable_ids"]
