"""Face data: SynthFaces (rendered on the fly), the common on-disk format read by FaceDataset, transforms, labels."""
from .faceformat import FaceDataset
from .synthfaces import SynthFaces

__all__ = ["FaceDataset", "SynthFaces"]
