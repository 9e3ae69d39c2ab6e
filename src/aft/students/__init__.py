"""Students: small task models ``forward(x) -> (logits, features)``, built by name from a registry.

Built-in names: ``cnn-small``, ``cnn-small-pt`` (pre-trained on a disjoint task), ``text-cnn``,
``wordllama-bag``, ``minilm``, ``two-tower`` (one tower per field of a multi-field dataset), ``st:<path>``, ``hf:<id>``, ``timm:<name>`` and ``module`` (any user ``nn.Module``; Python API).
"""

from aft.students.base import STUDENTS, Student, asset_path, build_student
from aft.students.module import ModuleStudent
from aft.students.multimodal import TwoTowerStudent
from aft.students.pretrained import PretrainedSmallCNN
from aft.students.text import TextCNN, TransformerStudent, WordLlamaBag
from aft.students.vision import SmallCNN, TimmStudent, images_to_tensor

__all__ = [
    "STUDENTS",
    "ModuleStudent",
    "PretrainedSmallCNN",
    "SmallCNN",
    "Student",
    "TextCNN",
    "TimmStudent",
    "TransformerStudent",
    "TwoTowerStudent",
    "WordLlamaBag",
    "asset_path",
    "build_student",
    "images_to_tensor",
]
