"""Live sliders for JupyterLab. Each has a static twin in the book (a `viz.player`), because saved widget state
renders a slider whose picture never changes without a kernel.

Headless runs (papermill, nbval, make book) show a one-line note instead of the widget, so no widget state ends up in
the committed notebooks; they also move every control once and redraw (`check_controls`), so `make test` drives every
live widget of the book.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Mapping

import torch
from PIL import Image

from .config import is_headless
from .viz import grid

HEADLESS_NOTE = "(live widget: open this notebook in JupyterLab to use it; the player below is its static twin)"
CONTROL_WIDTH = "340px"  # wide enough for a description and a track that can be dragged; rows wrap


def png_bytes(image: torch.Tensor, scale: int = 1) -> bytes:
    """A [3, H, W] image in [0, 1] as PNG bytes, enlarged `scale` times with nearest neighbours."""
    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _picture(draw: Callable[..., torch.Tensor], controls: Mapping[str, Any], nrow: int) -> torch.Tensor:
    images = draw(**{name: control.value for name, control in controls.items()})
    return grid(images, nrow=nrow) if images.dim() == 4 else images


def live_view(draw: Callable[..., torch.Tensor], controls: Mapping[str, Any], scale: int = 3, nrow: int = 8):
    """The widget of `live_images`, not displayed: controls (labelled, wrapping onto rows) above the picture."""
    import ipywidgets as widgets

    for name, control in controls.items():
        if not control.description:
            control.description = name
        control.style.description_width = "initial"
        control.layout.width = control.layout.width or CONTROL_WIDTH
    view = widgets.Image(format="png")

    def refresh(*_):
        view.value = png_bytes(_picture(draw, controls, nrow), scale)

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    row = widgets.Box(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([row, view])


def _other_value(control: Any) -> Any:
    """A value of the control other than its current one (the next option, or the far end of a range)."""
    if hasattr(control, "index") and hasattr(control, "options"):
        options = list(control.options)
        if len(options) < 2:
            return None
        option = options[(control.index + 1) % len(options)]
        return option[1] if isinstance(option, tuple) else option
    if isinstance(control.value, bool):
        return not control.value
    if hasattr(control, "min") and hasattr(control, "max"):
        return control.max if control.value != control.max else control.min
    raise TypeError(f"live widget control {type(control).__name__}: cannot choose another value to check it")


def check_controls(draw: Callable[..., torch.Tensor], controls: Mapping[str, Any], nrow: int = 8) -> list[str]:
    """Move each control once from its value (and back) and redraw: the names of those whose move changed nothing.

    An error in `draw` at any of those values propagates, naming the control and the value that raised it.
    """
    before = _picture(draw, controls, nrow)
    unchanged = []
    for name, control in controls.items():
        start, other = control.value, _other_value(control)
        if other is None:
            continue
        control.value = other
        try:
            after = _picture(draw, controls, nrow)
        except Exception as error:
            raise RuntimeError(f"live widget: draw failed with {name}={other!r} (the others at their start "
                               f"values): {type(error).__name__}: {error}") from error
        finally:
            control.value = start
        if after.shape == before.shape and torch.equal(after, before):
            unchanged.append(name)
    return unchanged


def live_images(draw: Callable[..., torch.Tensor], controls: Mapping[str, Any], scale: int = 3,
                nrow: int = 8) -> None:
    """A live view in JupyterLab: `draw(**values)` returns images [B, 3, H, W] (or one [3, H, W]), redrawn whenever a
    control moves. Displayed here, once (it returns nothing).

    Headless runs print a note instead, after moving every control once (`check_controls`): a control that makes
    `draw` fail stops the run, one that changes nothing is named in the note.
    """
    if is_headless():
        unchanged = check_controls(draw, controls, nrow)
        checked = (f"checked here: each of its {len(controls)} controls redraws the picture" if not unchanged else
                   f"checked here: moving {', '.join(unchanged)} alone leaves the picture unchanged")
        print(f"{HEADLESS_NOTE[:-1]}; {checked})")
        return
    from IPython.display import display

    display(live_view(draw, controls, scale, nrow))
