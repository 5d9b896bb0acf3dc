"""diffris: referring segmentation of large georeferenced scenes with DiffRIS and RSRefSeg."""

__version__ = "0.1.0"
