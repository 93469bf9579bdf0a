"""``napari-knossos`` subcommands: headless processing, no napari or Qt import.

    napari-knossos info PATH_OR_URL [--json]
    napari-knossos convert SRC DST [--to ome-zarr|wk-zarr3|wkw|knossos] [--layer NAME]... [--mags MAG...]
                                   [--chunk N] [--shard N] [--downsample|--no-downsample] [--anisotropic]
    napari-knossos downsample PATH [--layer NAME]... [--mode auto|mean|mode] [--anisotropic] [--coarsest MAG]

Long commands show progress and take ``--scheduler ADDRESS``: run on that dask.distributed
scheduler (``tcp://host:8786``) instead of the local threaded scheduler (:mod:`.processing.scheduler`).

Commands of other modules: :func:`main` imports each module of :data:`COMMAND_MODULES`
(``processing/mesh.py``, ``processing/stats.py``) if it exists and calls its
``add_cli_commands(subparsers)``. That function adds one parser per command with
``subparsers.add_parser(NAME, help=..., description=...)``, its arguments (for long commands
also :func:`add_scheduler_arguments`) and ``parser.set_defaults(run=FUNCTION)``, where
``FUNCTION(args: argparse.Namespace) -> int`` does the work and returns the exit code
(ValueError, OSError, KeyError, RuntimeError become ``error: ...`` and exit code 1). Those modules
must not import napari or Qt at import time. A missing module is skipped; one that fails to import
is reported on stderr and skipped.

The console script (``napari_knossos.__main__:main``) hands its arguments here when the first is
one of :func:`command_names`; a subcommand name wins over a dataset path of the same name
(write ``./info`` to open a folder named ``info`` in napari).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

__all__ = ["COMMAND_MODULES", "add_scheduler_arguments", "build_parser", "command_names", "main"]

PROG = "napari-knossos"
COMMAND_MODULES = ("napari_knossos.processing.mesh", "napari_knossos.processing.stats")


def add_scheduler_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scheduler ADDRESS`` and ``--no-progress``, for every long command."""
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="dask.distributed scheduler address (tcp://host:8786); default: local threads "
                        "(also: threads, sync, processes)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="do not show progress")


# ---------------------------------------------------------------------------------------- commands
def _run_info(args) -> int:
    from .processing.info import dataset_info, format_info

    info = dataset_info(args.path)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _add_info(subparsers) -> None:
    p = subparsers.add_parser("info", help="layers, dtypes, extents, mags, voxel size and format of a dataset",
                              description="Describe a KNOSSOS, webKnossos or (OME-)Zarr dataset (path or URL).")
    p.add_argument("path", metavar="PATH_OR_URL")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=_run_info)


def _run_convert(args) -> int:
    from .processing.convert import convert_dataset
    from .processing.info import dataset_info, format_info

    dst = convert_dataset(
        args.source, args.destination, to=args.to, layers=args.layer, mags=args.mags, chunk=args.chunk,
        shard=args.shard, downsample=args.downsample, anisotropic=args.anisotropic, scheduler=args.scheduler,
        progress=args.progress, overwrite=args.overwrite,
    )  # fmt: skip
    print(format_info(dataset_info(dst)))
    return 0


def _add_convert(subparsers) -> None:
    from .processing.convert import DEFAULT_SHAPES, FORMATS

    defaults = ", ".join(f"{k} {c}" + (f"/{s}" if s else "") for k, (c, s) in DEFAULT_SHAPES.items())
    p = subparsers.add_parser(
        "convert", help="convert dataset layers to OME-Zarr, webKnossos (zarr3, WKW) or KNOSSOS cubes",
        description="Copy layers of any readable dataset into a new dataset, block by block on dask. "
        f"Default chunk/shard edges: {defaults}.",
    )  # fmt: skip
    p.add_argument("source", metavar="SRC", help="dataset path or URL")
    p.add_argument("destination", metavar="DST", help="new dataset folder")
    p.add_argument("--to", choices=FORMATS, default="ome-zarr", help="target format (default: ome-zarr)")
    p.add_argument("--layer", action="append", metavar="NAME", help="layer to convert (repeatable; default: all)")
    p.add_argument("--mags", nargs="+", metavar="MAG", help="source mags to copy, e.g. 1 2-2-1 (default: all)")
    p.add_argument("--chunk", type=int, metavar="N", help="chunk edge in voxels (KNOSSOS: cube edge)")
    p.add_argument("--shard", type=int, metavar="N", help="shard (WKW file) edge in voxels, a multiple of the chunk")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--downsample", dest="downsample", action="store_true", default=None,
                       help="build missing mags for every layer (default: for layers with a single mag)")
    group.add_argument("--no-downsample", dest="downsample", action="store_false", help="build no mags")
    p.add_argument("--anisotropic", action="store_true", help="build mags 2-2-1 ... until voxels are near-isotropic")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    add_scheduler_arguments(p)
    p.set_defaults(run=_run_convert)


def _parse_coarsest(text: str):
    """``--coarsest``: an int for ``16``, a tuple for ``16-16-8`` / ``16,16,8``."""
    from .formats.mags import parse_mag

    try:
        mag = parse_mag(text, "--coarsest", commas=True)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return mag[0] if text.strip().isdigit() else mag


def _run_downsample(args) -> int:
    from .processing.downsample import downsample_dataset

    built = downsample_dataset(args.path, layers=args.layer, mode=args.mode, anisotropic=args.anisotropic,
                               coarsest=args.coarsest, scheduler=args.scheduler, progress=args.progress)
    for layer, mags in built.items():
        print(f"{layer}: built mags {', '.join(mags)}" if mags else f"{layer}: no mag missing")
    return 0


def _add_downsample(subparsers) -> None:
    from .processing.downsample import MODES

    p = subparsers.add_parser(
        "downsample", help="build the missing mags of a dataset in place",
        description="Add the missing mags (isotropic 2-2-2 steps, or --anisotropic 2-2-1 steps until voxels are "
        "near-isotropic, as webKnossos does) next to the existing ones and update the dataset's metadata.",
    )  # fmt: skip
    p.add_argument("path", metavar="PATH", help="local KNOSSOS, webKnossos or OME-Zarr dataset")
    p.add_argument("--layer", action="append", metavar="NAME", help="layer to downsample (repeatable; default: all)")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="mean or mode (most frequent id); auto: mode for segmentations, mean for images")
    p.add_argument("--anisotropic", action="store_true", help="2-2-1 steps until voxels are near-isotropic")
    p.add_argument("--coarsest", type=_parse_coarsest, metavar="MAG",
                   help="coarsest mag to build (default: max(x, y) about 100 voxels, at least 4)")
    add_scheduler_arguments(p)
    p.set_defaults(run=_run_downsample)


# ---------------------------------------------------------------------------------------- parser
def _add_module_commands(subparsers) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            print(f"{PROG}: commands of {name} unavailable: {err}", file=sys.stderr)
            continue
        except ImportError as err:
            print(f"{PROG}: commands of {name} unavailable: {err}", file=sys.stderr)
            continue
        add = getattr(module, "add_cli_commands", None)
        if add is None:
            print(f"{PROG}: {name} has no add_cli_commands(subparsers); its commands are skipped", file=sys.stderr)
            continue
        add(subparsers)


def _build():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Headless processing of KNOSSOS, webKnossos and OME-Zarr datasets "
        "(without a subcommand, napari-knossos opens napari).",
    )  # fmt: skip
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_info(subparsers)
    _add_convert(subparsers)
    _add_downsample(subparsers)
    _add_module_commands(subparsers)
    return parser, subparsers


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (ours and those of :data:`COMMAND_MODULES`)."""
    return _build()[0]


def command_names() -> list[str]:
    """Every subcommand name."""
    return list(_build()[1].choices)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; its exit code (1 with ``error: ...`` on stderr when it fails)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
