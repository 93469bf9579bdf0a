"""Tracing settings that survive a restart: comment slots and the tracing widget's display settings.

Stored as JSON in ``<user config dir>/tracing-settings.json`` (``platformdirs``' config dir for
"napari-knossos", or ``$NAPARI_KNOSSOS_CONFIG_DIR``), written atomically. A missing file gives the
defaults; an unreadable or malformed one gives one warning naming the file, and the defaults.
No Qt, no napari.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .formats.atomic import atomic_write_bytes

__all__ = ["CommentSlot", "TracingSettings", "config_dir", "load_settings", "save_settings", "settings_path"]

CONFIG_ENV = "NAPARI_KNOSSOS_CONFIG_DIR"
SETTINGS_FILE = "tracing-settings.json"
SETTINGS_VERSION = 1
N_SLOTS = 10


def config_dir() -> Path:
    """The user config folder of napari-knossos (``$NAPARI_KNOSSOS_CONFIG_DIR`` overrides)."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-knossos", appauthor=False))


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


@dataclass
class CommentSlot:
    """One Ctrl+1 … Ctrl+0 comment: its text, and an optional highlight colour (RGBA 0–1) and
    node radius (voxels) for nodes whose comment contains the text (KNOSSOS ``CommentSetting``)."""

    text: str = ""
    color: tuple[float, float, float, float] | None = None
    radius: float | None = None


@dataclass
class TracingSettings:
    """Everything the tracing widget remembers between sessions (defaults = KNOSSOS defaults)."""

    comment_slots: list[CommentSlot] = field(default_factory=lambda: [CommentSlot() for _ in range(N_SLOTS)])
    comment_colors: bool = True  # draw nodes in their comment slot's colour
    comment_radii: bool = True  # draw nodes with their comment slot's radius
    show_comments: bool = False  # comment text beside the nodes (KNOSSOS "show node comments", off by default)
    default_radius: float = 1.5  # radius (voxels) of new nodes (KNOSSOS default 1.5)
    linking: bool = True
    radius_locking: bool = False
    locking_word: str = "seed"
    locking_radius: float = 100.0
    skeleton_depth: int = 2
    autosave: bool = True
    autosave_minutes: int = 5
    mesh_opacity: float = 0.6
    size_property: str = ""  # node radius = radius_scale × this property ("" = off)
    radius_scale: float = 1.0
    color_property: str = ""  # node colour = colormap over [color_min, color_max] ("" = off)
    colormap: str = "viridis"
    color_auto_range: bool = True  # use the property's own min and max
    color_min: float = 0.0
    color_max: float = 1.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["comment_slots"] = [{"text": s.text, "color": list(s.color) if s.color is not None else None,
                                  "radius": s.radius} for s in self.comment_slots]
        return {"version": SETTINGS_VERSION, **data}

    @classmethod
    def from_json(cls, data) -> TracingSettings:
        """Settings from :meth:`to_json` output; missing keys keep their defaults, unknown keys are
        ignored. Raises ValueError or TypeError naming the first malformed entry."""
        if not isinstance(data, dict):
            raise TypeError("the top level is not a JSON object")
        out = cls()
        for f in fields(cls):
            if f.name == "comment_slots" or f.name not in data:
                continue
            default = getattr(out, f.name)
            value = data[f.name]
            kind = type(default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not kind:
                raise ValueError(f"{f.name!r} should be {kind.__name__}, got {value!r}")
            setattr(out, f.name, value)
        if not out.default_radius > 0:
            raise ValueError(f"'default_radius' should be positive, got {out.default_radius!r}")
        if "comment_slots" in data:
            slots = data["comment_slots"]
            if not isinstance(slots, list) or len(slots) > N_SLOTS:
                raise ValueError(f"'comment_slots' should be a list of at most {N_SLOTS} slots")
            for i, item in enumerate(slots):
                out.comment_slots[i] = _slot_from_json(item, i)
        return out


def _slot_from_json(item, i: int) -> CommentSlot:
    where = f"comment_slots[{i}]"
    if not isinstance(item, dict):
        raise TypeError(f"{where} is not an object")
    text, color, radius = item.get("text", ""), item.get("color"), item.get("radius")
    if not isinstance(text, str):
        raise TypeError(f"{where}.text should be a string, got {text!r}")
    if color is not None:
        if (not isinstance(color, list) or len(color) not in (3, 4)
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in color)):
            raise ValueError(f"{where}.color should be 3 or 4 numbers in 0–1, got {color!r}")
        color = tuple(float(c) for c in color) + ((1.0,) if len(color) == 3 else ())
    if radius is not None:
        if not isinstance(radius, (int, float)) or isinstance(radius, bool) or radius <= 0:
            raise ValueError(f"{where}.radius should be a positive number, got {radius!r}")
        radius = float(radius)
    return CommentSlot(text, color, radius)


def load_settings(path: str | os.PathLike | None = None) -> TracingSettings:
    """Read the settings file (default :func:`settings_path`): defaults if it does not exist; one
    warning naming the file and the defaults if it is unreadable or malformed."""
    path = Path(path) if path is not None else settings_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return TracingSettings()
    except OSError as error:
        warnings.warn(f"{path}: cannot read the tracing settings ({error}); using the defaults", stacklevel=2)
        return TracingSettings()
    try:
        return TracingSettings.from_json(json.loads(raw.decode("utf-8")))
    except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        warnings.warn(f"{path}: corrupt tracing settings ({error}); using the defaults", stacklevel=2)
        return TracingSettings()


def save_settings(settings: TracingSettings, path: str | os.PathLike | None = None) -> Path:
    """Write the settings atomically (temporary file + rename); returns the file."""
    path = Path(path) if path is not None else settings_path()
    text = json.dumps(settings.to_json(), indent=1, ensure_ascii=False)
    atomic_write_bytes(path, text.encode("utf-8"), durable=False)
    return path
