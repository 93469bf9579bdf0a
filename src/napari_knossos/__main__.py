"""``napari-knossos`` console script: open napari with the sample, or with the given datasets."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "open_viewer"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="napari-knossos",
        epilog="Headless commands (no napari, no Qt): napari-knossos info|convert|downsample|mesh|nml-stats "
        "... ; see napari-knossos COMMAND --help.",
        description="Open KNOSSOS, webKnossos or Zarr datasets (paths or http(s) URLs) in napari; "
        "with no path, the bundled synthetic neuropil sample.",
    )
    p.add_argument("paths", nargs="*", help="dataset paths or URLs (default: the bundled sample)")
    p.add_argument("--sample", choices=["annotated", "knossos", "webknossos"], default="annotated",
                   help="which sample to open when no path is given: the KNOSSOS volume with its "
                   "annotation (default), the KNOSSOS volume alone, or its webKnossos zarr3 copy")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the viewer and exit")
    p.add_argument("--ndisplay", type=int, choices=[2, 3], default=2)
    p.add_argument("--no-tools", action="store_true", help="do not dock the tracing widget")
    return p


def open_viewer(paths: list[str], sample: str = "annotated", ndisplay: int = 2, show: bool = True,
                tools: bool = True):
    """A napari viewer with ``paths`` (or the sample) opened by this plugin, and (``tools``)
    the tracing dock widget attached to it."""
    import napari

    viewer = napari.Viewer(title="napari-knossos", show=False, ndisplay=ndisplay)
    if show:
        from napari.qt import get_qapp

        viewer.window.show()  # restores napari's saved geometry, so size it afterwards
        viewer.window.resize(1400, 900)
        get_qapp().processEvents()  # let the canvas take its size before reset_view
    if paths:
        for path in paths:
            viewer.open(path, plugin="napari-knossos")
    else:
        viewer.open_sample("napari-knossos", f"neuropil_{sample}")
    if viewer.layers:
        viewer.canvas.overlays.scale_bar.visible = True  # units come from the layers (nm)
        for layer in viewer.layers:
            if type(layer).__name__ == "Labels":
                layer.opacity = 0.4
        viewer.reset_view()
        step = list(viewer.dims.current_step)
        step[0] = viewer.dims.nsteps[0] // 2  # start in the middle of the stack …
        viewer.dims.current_step = tuple(step)
        _go_to_edit_position(viewer)  # … or, as KNOSSOS does, where the annotation was left
    if tools and show:
        viewer.window.add_plugin_dock_widget("napari-knossos", "Tracing and synapses")
        image = next((layer for layer in viewer.layers if type(layer).__name__ == "Image"), None)
        if image is not None:
            viewer.layers.selection.active = image  # tracing keys work on the image layer
    return viewer


def _go_to_edit_position(viewer) -> None:
    """Move the z slice to the edit position of the first skeleton layer, if any."""
    from .skeleton_layers import SKELETON_KEY

    for layer in viewer.layers:
        skel = layer.metadata.get(SKELETON_KEY)
        if skel is not None and skel.parameters.edit_position is not None:
            z = float(skel.parameters.edit_position[2])
            viewer.dims.set_point(0, z * float(layer.scale[0]) + float(layer.translate[0]))
            return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-"):
        from . import cli  # headless subcommands (info, convert, ...): no napari or Qt import

        if argv[0] in cli.command_names():
            return cli.main(argv)
    args = _parser().parse_args(argv)
    import napari

    viewer = open_viewer(args.paths, args.sample, args.ndisplay, show=True, tools=not args.no_tools)
    if args.screenshot:
        from napari.qt import get_qapp

        get_qapp().processEvents()  # let the dock widget take its place
        viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
