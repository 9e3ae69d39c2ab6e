"""Fine-tune the bundled MiniLM on a small SpamAssassin subset with a Hugging Face `Trainer` + AFT.

The teacher here is MiniLM itself (sentence-transformers features, cached once in a feature store);
swap in any other teacher name (``--teacher mpnet``) to transfer from a larger model.

    python examples/hf_trainer.py --steps 50 --n 256 --max-length 128 --out runs/hf-trainer
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
)

import aft.assets  # noqa: E402
import aft.data  # noqa: E402
import aft.features  # noqa: E402
import aft.regularizers  # noqa: E402
from aft.integrations.hf_trainer import AFTTrainer, TeacherFeatureCollator  # noqa: E402
from aft.teachers import build_teacher  # noqa: E402


class TokenizedSplit(torch.utils.data.Dataset):
    """A `DatasetSplit` as tokenized examples that keep their ``sample_id`` (a `datasets.Dataset` works too)."""

    def __init__(self, split: aft.data.DatasetSplit, tokenizer, max_length: int) -> None:
        enc = tokenizer(list(split.inputs), truncation=True, max_length=max_length)
        self.rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                      "labels": int(split.labels[i]), "sample_id": split.ids[i]} for i in range(len(split))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def main(argv: list[str] | None = None) -> AFTTrainer:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--n", type=int, default=256, help="training examples (stratified subsample)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per email (student and teacher)")
    p.add_argument("--out", default="runs/hf-trainer")
    p.add_argument("--teacher", default="minilm")
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    out = Path(args.out)
    train = aft.data.stratified_subsample(aft.data.load_split("spam-assassin", "train"), args.n, seed=0)

    # 1. teacher features, extracted once into a store and looked up by sample id
    teacher = build_teacher(args.teacher, max_seq_length=args.max_length)
    aft.features.extract([teacher], train, out / "features", batch_size=16, progress=False)
    features = aft.features.open_features(out / "features", [teacher], train)

    # 2. the student: MiniLM with a new classification head
    folder = aft.assets.ensure("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=train.num_classes)

    # 3. the Trainer, with the AFT regularizer on the mean-pooled last hidden state
    reg = aft.regularizers.build("aft", student_dim=model.config.hidden_size, teacher_dim=features.dim)
    targs = TrainingArguments(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                              learning_rate=5e-5, logging_steps=1, save_strategy="no", report_to="none",
                              remove_unused_columns=True, dataloader_num_workers=0, seed=0,
                              dataloader_pin_memory=torch.cuda.is_available())
    trainer = AFTTrainer(model=model, args=targs, train_dataset=TokenizedSplit(train, tokenizer, args.max_length),
                         data_collator=TeacherFeatureCollator(features, DataCollatorWithPadding(tokenizer)),
                         regularizer=reg, beta=args.beta)
    trainer.train()
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    rho = reg.importance()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    summary = {"steps": trainer.state.global_step, "last_log": logged[-1] if logged else {},
               "rho_min": float(rho.min()), "rho_max": float(rho.max())}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return trainer


if __name__ == "__main__":
    main()
