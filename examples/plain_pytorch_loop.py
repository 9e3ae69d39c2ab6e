"""AFT in a hand-written PyTorch loop on digits with one cached teacher (public API only).

    python examples/plain_pytorch_loop.py --steps 300 --out runs/plain-loop
    python examples/plain_pytorch_loop.py --teacher efficientnet-lite0   # a real teacher (offline asset)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import aft.data
import aft.features
import aft.regularizers
from aft.teachers import ModuleTeacher, build_teacher


class TinyStudent(nn.Module):
    """forward(x) -> (logits, phi): a one-hidden-layer MLP on 8x8 images; phi feeds the head."""

    def __init__(self, num_classes: int, dim: int = 32) -> None:
        super().__init__()
        self.body, self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, dim), nn.ReLU()), nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.body(x)
        return self.head(phi), phi


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/plain-loop")
    p.add_argument("--teacher", default="random", help="'random' (fixed random projection) or a teacher name")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    train, test = aft.data.load_split("digits", "train"), aft.data.load_split("digits", "test")
    teacher = (ModuleTeacher(nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.Tanh()), dim=256, channels=1,
                             name="random-projection") if args.teacher == "random" else build_teacher(args.teacher))
    out = Path(args.out)
    aft.features.extract([teacher], train, out / "features", progress=False)  # once; a complete store is kept
    features = aft.features.open_features(out / "features", [teacher], train)  # rows looked up by sample id
    x, y = torch.from_numpy(train.inputs).float().unsqueeze(1) / 255.0, torch.from_numpy(train.labels)
    student = TinyStudent(train.num_classes)
    reg = aft.regularizers.build("aft", student_dim=32, teacher_dim=features.dim)
    opt = torch.optim.AdamW([{"params": student.parameters()}, *reg.param_groups(args.lr, 1e-4)],
                            lr=args.lr, weight_decay=1e-4)
    order, pos = torch.randperm(len(train)), 0
    for _ in range(args.steps):
        if pos + args.batch_size > len(order):
            order, pos = torch.randperm(len(train)), 0  # reshuffle every epoch
        idx, pos = order[pos : pos + args.batch_size], pos + args.batch_size
        psi = torch.from_numpy(features.get([train.ids[i] for i in idx]))
        logits, phi = student(x[idx])
        loss = F.cross_entropy(logits, y[idx]) + args.beta * reg(phi, psi)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        test_logits = student(torch.from_numpy(test.inputs).float().unsqueeze(1) / 255.0)[0]
    rho = reg.importance()
    summary = {"steps": args.steps, "test_accuracy": float((test_logits.argmax(1).numpy() == test.labels).mean()),
               "final_loss": loss.item(), "rho_min": float(rho.min()), "rho_max": float(rho.max())}
    save_file(student.state_dict(), str(out / "student.safetensors"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
