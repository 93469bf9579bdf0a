"""Annotation model (pure Python): skeletons and their file formats."""

from .skeleton import BoundingBox, Group, MetadataEntry, Parameters, Skeleton, Tree

__all__ = ["BoundingBox", "Group", "MetadataEntry", "Parameters", "Skeleton", "Tree"]
