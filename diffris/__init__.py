"""diffris: referring segmentation of large georeferenced scenes with DiffRIS."""

__version__ = "0.1.0"
