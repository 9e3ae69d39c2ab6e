"""`two-tower`: one built-in student per field (an image tower, a text tower...), fused, then a head.

The student of the paper's vision-language experiment is a dual encoder (CLIP RN50) whose image
and text features are combined; here any built-in students serve as towers (``cnn-small`` for
images, ``text-cnn`` / ``wordllama-bag`` for texts). Each tower's penultimate features are
(optionally) projected to ``proj_dim``, then fused:

* ``concat``: [f_1, ..., f_m] (dimension sum of the tower dims);
* ``product``: the flattened tensor product f_1 (x) ... (x) f_m (dimension prod of the dims;
  ``proj_dim`` defaults to 16 there so that it stays small).

The fused vector is phi (what AFT / KD / RKD compare with the teacher features) and a linear head
maps it to the logits.

Inputs. The training loop, prediction and export pass one tensor per batch, so ``preprocess``
takes a multi-field batch (`aft.data.multifield.FieldRows`, or a list of ``{field: value}``
records), runs each tower's own preprocess on its field and packs the results side by side into
one float32 tensor ``(N, sum_k numel_k)``; ``forward`` unpacks it (token ids are exact in float32
below 2^24). The per-tower layout comes from each tower's preprocess of a dummy input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from aft.errors import ConfigError, DataError
from aft.students.base import STUDENTS, Student, build_student

FUSIONS = ("concat", "product")
_DUMMY: dict[str, Any] = {"image": lambda: np.zeros((1, 28, 28), dtype=np.uint8), "text": lambda: ["a"]}


class TwoTowerStudent(Student):
    """Per-field towers fused by concatenation or tensor product, then a linear head.

    Args:
        num_classes: output classes.
        towers: ``{field: student name}`` in fusion order (default image: cnn-small, text: text-cnn).
        tower_options: ``{field: {option: value}}`` for each tower's builder.
        fusion: ``"concat"`` or ``"product"``.
        proj_dim: project each tower's features to this size first (None: no projection for
            concat, 16 for product).
        dropout: dropout before the head.
    """

    name = "two-tower"
    modality = "multi"

    def __init__(self, num_classes: int, towers: Mapping[str, str] | None = None,
                 tower_options: Mapping[str, Mapping[str, Any]] | None = None, fusion: str = "concat",
                 proj_dim: int | None = None, dropout: float = 0.0) -> None:
        towers = dict(towers or {"image": "cnn-small", "text": "text-cnn"})
        tower_options = {k: dict(v) for k, v in (tower_options or {}).items()}
        super().__init__(num_classes, {"towers": towers, "tower_options": tower_options, "fusion": fusion,
                                       "proj_dim": proj_dim, "dropout": dropout})
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; valid fusions: {', '.join(FUSIONS)}")
        if len(towers) < 1:
            raise ConfigError("two-tower needs at least one tower: towers={field: student}")
        unknown = sorted(set(tower_options) - set(towers))
        if unknown:
            raise ConfigError(f"tower_options for {unknown[0]!r}, which has no tower; towers: {', '.join(towers)}")
        self.fields = list(towers)
        self.fusion = fusion
        self.towers = nn.ModuleDict({f: build_student(towers[f], num_classes, **tower_options.get(f, {})) for f in self.fields})
        for f, tower in self.towers.items():
            if tower.modality not in _DUMMY:
                raise ConfigError(f"tower {f!r}: student {towers[f]!r} takes {tower.modality} inputs; use an image or text student")
        dim = None if proj_dim is None and fusion == "concat" else int(proj_dim or 16)
        self.proj = nn.ModuleDict({f: nn.Linear(self._tower_dim(t), dim) for f, t in self.towers.items()}) if dim else None
        dims = [dim if dim else self._tower_dim(t) for t in self.towers.values()]
        fused = int(np.prod(dims)) if fusion == "product" else int(sum(dims))
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(fused, num_classes)
        self._layout: list[tuple[str, tuple[int, ...], torch.dtype]] | None = None

    @staticmethod
    def _tower_dim(tower: Student) -> int:
        if tower.example_input() is None:
            raise ConfigError(f"tower {tower.name!r} cannot report its feature size without data; pick a built-in student")
        return tower.feature_dim

    # --- inputs -------------------------------------------------------------------------------
    def layout(self) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
        """Per field: the trailing shape and dtype of its tower's preprocessed input."""
        if self._layout is None:
            out = []
            for f, tower in self.towers.items():
                x = tower.preprocess(_DUMMY[tower.modality]())
                out.append((f, tuple(x.shape[1:]), x.dtype))
            self._layout = out
        return self._layout

    def preprocess(self, raw_inputs: Any) -> torch.Tensor:
        from aft.data.multifield import FieldRows

        rows = FieldRows.from_records(raw_inputs)
        missing = [f for f in self.fields if f not in rows.columns]
        if missing:
            raise DataError(f"two-tower student needs field {missing[0]!r}; the inputs have {', '.join(rows.columns)}")
        parts = []
        for f, shape, _dtype in self.layout():
            col = rows.columns[f]
            if self.towers[f].modality == "image" and not isinstance(col, np.ndarray):
                col = self._read_images(col)
            x = self.towers[f].preprocess(col)
            if tuple(x.shape[1:]) != shape:
                raise DataError(f"field {f!r}: preprocessed shape {tuple(x.shape[1:])} differs from {shape}")
            parts.append(x.reshape(x.shape[0], -1).to(torch.float32))
        return torch.cat(parts, dim=1)

    @staticmethod
    def _read_images(values: Sequence[Any]) -> Any:
        """Image values given as file paths (prediction from a table): read each, keep arrays as they are."""
        from pathlib import Path

        from aft.data.multifield import load_images

        if all(isinstance(v, str) for v in values):
            return load_images([Path(v) for v in values], mode="L")
        return [np.asarray(v) for v in values]

    def example_input(self) -> torch.Tensor:
        # zeros for images, token id 1 for texts (0 is padding)
        parts = [torch.full((2, int(np.prod(shape))), 0.0 if dtype.is_floating_point else 1.0)
                 for _, shape, dtype in self.layout()]
        return torch.cat(parts, dim=1)

    def unpack(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The packed batch back into each tower's input."""
        out, start = {}, 0
        for f, shape, dtype in self.layout():
            n = int(np.prod(shape))
            out[f] = x[:, start:start + n].reshape(x.shape[0], *shape).to(dtype)
            start += n
        if start != x.shape[1]:
            raise DataError(f"two-tower input has {x.shape[1]} columns, expected {start}; use this student's preprocess")
        return out

    # --- model --------------------------------------------------------------------------------
    def tower_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each tower's (projected) features, in field order."""
        feats = []
        for f, xf in self.unpack(x).items():
            _, h = self.towers[f](xf)
            feats.append(self.proj[f](h) if self.proj is not None else h)
        return feats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.tower_features(x)
        if self.fusion == "product":
            fused = feats[0]
            for h in feats[1:]:
                fused = torch.einsum("bi,bj->bij", fused, h).reshape(x.shape[0], -1)
        else:
            fused = torch.cat(feats, dim=1)
        return self.head(self.dropout(fused)), fused


STUDENTS.add("two-tower", TwoTowerStudent)

__all__: Sequence[str] = ["FUSIONS", "TwoTowerStudent"]
