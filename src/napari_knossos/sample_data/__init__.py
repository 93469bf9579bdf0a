"""The bundled synthetic EM-neuropil sample (see README.md here; regenerate with ``generate.py``).

``KNOSSOS_SAMPLE`` is the KNOSSOS dataset's ``.k.toml`` (its folder also holds legacy
``knossos.conf`` files), ``WEBKNOSSOS_SAMPLE`` the webKnossos zarr3 copy of the same voxels.
"""

from pathlib import Path

__all__ = ["KNOSSOS_SAMPLE", "SAMPLE_DIR", "WEBKNOSSOS_SAMPLE"]

SAMPLE_DIR = Path(__file__).resolve().parent
KNOSSOS_SAMPLE = SAMPLE_DIR / "knossos" / "synthetic_neuropil.k.toml"
WEBKNOSSOS_SAMPLE = SAMPLE_DIR / "webknossos"
