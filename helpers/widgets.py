"""Live sliders for JupyterLab. Each has a static twin in the book (a `viz.player`), because saved widget state
renders a slider whose picture never changes without a kernel.

Headless runs (papermill, nbval, make book) show a one-line note instead of the widget, so no widget state ends up in
the committed notebooks.
"""
from __future__ import annotations

import io
from typing import Callable, Mapping

import torch
from PIL import Image

from .config import is_headless
from .viz import grid

HEADLESS_NOTE = "(live widget: open this notebook in JupyterLab to use it; the player below is its static twin)"


def png_bytes(image: torch.Tensor, scale: int = 1) -> bytes:
    """A [3, H, W] image in [0, 1] as PNG bytes, enlarged `scale` times with nearest neighbours."""
    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def live_images(draw: Callable[..., torch.Tensor], controls: Mapping[str, object], scale: int = 3,
                nrow: int = 8):
    """A live view: `draw(**values)` returns images [B, 3, H, W] (or one [3, H, W]) redrawn whenever a control moves.

    Returns the ipywidgets box, or None in headless runs (where it prints a note instead).
    """
    if is_headless():
        print(HEADLESS_NOTE)
        return None
    import ipywidgets as widgets
    from IPython.display import display

    view = widgets.Image(format="png")

    def refresh(*_):
        images = draw(**{name: control.value for name, control in controls.items()})
        view.value = png_bytes(grid(images, nrow=nrow) if images.dim() == 4 else images, scale)

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    box = widgets.VBox([widgets.HBox(list(controls.values())), view])
    display(box)
    return box
