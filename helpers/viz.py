"""Figures of the book: image grids, label maps in the papers' colour code, heatmaps, and scrubbable players.

Every player is a matplotlib `to_jshtml` animation: self-contained, works in the static book without a kernel, and
is the twin of a live ipywidgets slider. Its HTML id is derived from its content, so reruns give identical notebooks.
"""
from __future__ import annotations

import hashlib
import re
import textwrap
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
              legend: Mapping[str, tuple[int, int, int]] | None = None, columns: Sequence[str] | None = None):
    """One figure with a named row per batch of images (all batches the same length); `columns` names the columns
    over the first row; `legend` (name -> RGB in 0..255, e.g. labels.ROI_COLOURS) adds a colour key under the rows."""
    count = len(rows[0][1])
    if columns is not None and len(columns) != count:
        raise ValueError(f"columns: {len(columns)} names for {count} images per row")
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
            if r == 0 and columns is not None:
                ax.set_title(columns[c], fontsize=9)
    fig.tight_layout()
    if legend:
        add_colour_key(fig, legend)
    return fig


def key_columns(width: float, entries: int) -> int:
    """Entries per row of a colour key that fits a figure `width` inches wide (about 1.3 in per entry at 9 pt)."""
    return max(1, min(entries, int(width / 1.3)))


def add_colour_key(fig, colours: Mapping[str, tuple[int, int, int]], below: bool = True) -> None:
    """A legend of coloured patches (name -> RGB in 0..255) wrapped to the figure's width: under the figure, or
    (below=False) inside its bottom edge, for figures saved without a tight bounding box (the players)."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=tuple(v / 255 for v in rgb), edgecolor="0.5", label=name) for name, rgb in colours.items()]
    fig.legend(handles=handles, loc="upper center" if below else "lower center", bbox_to_anchor=(0.5, 0.0),
               ncol=key_columns(fig.get_figwidth(), len(handles)), frameon=False, fontsize=9)


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


def player(frames: torch.Tensor, captions: Sequence[str] | None = None, fps: int = 6, nrow: int | None = None,
           labels: Sequence[str] | None = None, legend: Mapping[str, tuple[int, int, int]] | None = None,
           tile: float = 1.5, size: float | None = None):
    """A scrubbable player (HTML), the static twin of a live slider.

    `frames` [T, B, 3, H, W] are drawn as B tiles, `nrow` per row, each `tile` inches wide (or `size` inches for
    the whole row), with an optional label over each tile and a colour key (`legend`, name -> RGB in 0..255) under
    them; [T, 3, H, W] is one tile per frame. Captions are wrapped to the figure's width.
    """
    from IPython.display import HTML

    fig, draw = _player_figure(frames, captions, nrow, labels, legend, tile, size)
    anim = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 // fps, blit=False)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(stable_ids(offline_controls(html)))


def _player_figure(frames, captions, nrow, labels, legend, tile, size):
    """The player's figure at frame 0 and the function that draws frame t on it."""
    if frames.dim() == 4:
        frames = frames[:, None]
    if captions is not None and len(captions) != len(frames):
        raise ValueError(f"captions: {len(captions)} for {len(frames)} frames")
    count = frames.shape[1]
    if labels is not None and len(labels) != count:
        raise ValueError(f"labels: {len(labels)} names for {count} tiles per frame")
    columns = min(nrow or count, count)
    rows = -(-count // columns)
    width = size / columns if size else tile
    height = width * frames.shape[-2] / frames.shape[-1]
    label_room = 0.3 if labels is not None else 0.05
    key_room = 0.3 * -(-len(legend) // key_columns(width * columns, len(legend))) + 0.1 if legend else 0.0
    chars = max(20, int(width * columns * 12))  # characters per caption line at 10 pt
    wrapped = [textwrap.fill(text, chars) for text in (captions or [""] * len(frames))]
    lines = max(text.count("\n") + 1 for text in wrapped)
    wrapped = [text + "\n" * (lines - 1 - text.count("\n")) for text in wrapped]  # one layout for every frame
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(width * columns, (height + label_room) * rows + 0.2 * lines + 0.2 + key_room))
    shown = []
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < count:
            shown.append(ax.imshow(to_numpy_image(frames[0, k]), interpolation="nearest"))
            if labels is not None:
                ax.set_title(labels[k], fontsize=9)
    title = fig.suptitle(wrapped[0], fontsize=10)
    fig.tight_layout(rect=(0, key_room / fig.get_figheight(), 1, 1))
    if legend:
        add_colour_key(fig, legend, below=False)

    def draw(t):
        for k, image in enumerate(shown):
            image.set_data(to_numpy_image(frames[t, k]))
        title.set_text(wrapped[t])
        return (*shown, title)

    return fig, draw


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


__all__ = ["add_colour_key", "key_columns", "helen_colour_map", "roi_colour_map", "to_numpy_image", "grid",
           "show_grid", "show_rows", "heatmap", "player", "offline_controls", "stable_ids"]
