"""napari-knossos: KNOSSOS-style connectomics annotation in napari."""

__version__ = "0.1.0"
