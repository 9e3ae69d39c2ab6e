"""AFTTrainer and TeacherFeatureCollator on a tiny randomly initialised BERT (no download, a few steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import BertConfig, BertForSequenceClassification, TrainingArguments  # noqa: E402

import aft.regularizers  # noqa: E402
from aft.errors import ConfigError, FeatureStoreError  # noqa: E402
from aft.features import InMemoryFeatures  # noqa: E402
from aft.integrations.hf_trainer import (  # noqa: E402
    REGULARIZER_WEIGHTS,
    SAMPLE_ID,
    TEACHER_FEATURES,
    AFTTrainer,
    TeacherFeatureCollator,
)

N, SEQ, HIDDEN, TEACHER_DIM, BETA, PRIOR_LR, LR = 24, 12, 16, 8, 5.0, 5e-2, 1e-3


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add synchronisation on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _rows(prefix: str = "s") -> list[dict]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (N, SEQ), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": torch.tensor(i % 2),
             SAMPLE_ID: f"{prefix}{i}", "text": f"unused column {i}"} for i in range(N)]


def _features() -> InMemoryFeatures:
    rng = np.random.default_rng(0)
    return InMemoryFeatures([f"s{i}" for i in range(N)], rng.normal(size=(N, TEACHER_DIM)).astype(np.float32))


def _model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=SEQ, num_labels=2)
    return BertForSequenceClassification(cfg)


def _trainer(tmp_path, steps: int = 3, **kw) -> AFTTrainer:
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                             learning_rate=LR, weight_decay=0.01, logging_steps=1, save_strategy="no",
                             report_to="none", disable_tqdm=True, remove_unused_columns=True, seed=0,
                             dataloader_pin_memory=False, use_cpu=True)
    reg = aft.regularizers.build("aft", student_dim=HIDDEN, teacher_dim=TEACHER_DIM, prior_lr=PRIOR_LR)
    kw.setdefault("data_collator", TeacherFeatureCollator(_features()))
    return AFTTrainer(model=_model(), args=args, train_dataset=ListDataset(_rows()), regularizer=reg, beta=BETA, **kw)


def test_collator_looks_up_features_by_id_and_strips_ids():
    feats = _features()
    batch = TeacherFeatureCollator(feats)([_rows()[5], _rows()[2]])
    assert SAMPLE_ID not in batch
    np.testing.assert_array_equal(batch[TEACHER_FEATURES].numpy(), feats.get(["s5", "s2"]))
    assert batch["labels"].tolist() == [1, 0]


def test_collator_missing_ids_error_or_omit():
    unknown = _rows("u")[:2]
    with pytest.raises(FeatureStoreError, match="u0"):
        TeacherFeatureCollator(_features())(unknown)
    batch = TeacherFeatureCollator(_features(), on_missing="omit")(unknown)
    assert TEACHER_FEATURES not in batch and batch["input_ids"].shape == (2, SEQ)
    with pytest.raises(ConfigError, match="sample_id"):
        TeacherFeatureCollator(_features())([{"input_ids": [1, 2]}])
    with pytest.raises(ConfigError, match="on_missing"):
        TeacherFeatureCollator(_features(), on_missing="skip")  # type: ignore[arg-type]


def test_sample_id_survives_remove_unused_columns(tmp_path):
    trainer = _trainer(tmp_path)
    trainer._set_signature_columns_if_needed()
    assert SAMPLE_ID in trainer._signature_columns and "text" not in trainer._signature_columns
    batch = next(iter(trainer.get_train_dataloader()))  # RemoveColumnsCollator -> TeacherFeatureCollator
    assert "text" not in batch and SAMPLE_ID not in batch
    assert batch[TEACHER_FEATURES].shape == (8, TEACHER_DIM)
    # the rows' features, found by id: every row of the batch is one of the stored rows
    stored = _features().get([f"s{i}" for i in range(N)])
    for row in batch[TEACHER_FEATURES].numpy():
        assert np.isclose(stored, row).all(axis=1).any()


def test_sample_id_survives_datasets_remove_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{k: (v.tolist() if torch.is_tensor(v) else v) for k, v in r.items()} for r in _rows()]
    ds = datasets.Dataset.from_list(rows)
    kept = _trainer(tmp_path)._remove_unused_columns(ds)
    assert SAMPLE_ID in kept.column_names and "text" not in kept.column_names


def test_training_adds_regularizer_group_and_logs_metrics(tmp_path):
    trainer = _trainer(tmp_path, steps=3)
    s = trainer.regularizer.s
    trainer.train()
    groups = [g for g in trainer.optimizer.param_groups if any(p is s for p in g["params"])]
    assert len(groups) == 1 and len(groups[0]["params"]) == 1
    assert groups[0]["initial_lr"] == PRIOR_LR and groups[0]["weight_decay"] == 0.0  # its own lr, no decay
    assert all(g["initial_lr"] == LR for g in trainer.optimizer.param_groups if g is not groups[0])
    assert float(s.detach().abs().max()) > 1e-4  # the scales received gradient and moved from 0
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3
    for h in logs:
        assert math.isfinite(h["loss"])
        assert {"aft/loss", "aft/rho_mean", "aft/task_loss"} <= set(h)
        assert h["loss"] == pytest.approx(h["aft/task_loss"] + h["aft/beta"] * h["aft/loss"], rel=1e-4)
    assert logs[0]["aft/rho_mean"] == pytest.approx(0.5)  # rho starts at sigmoid(0)
    # beta_warmup "auto": 0 until the task loss leaves chance or 30 % of the steps (1 of 3) have passed
    assert logs[0]["aft/beta"] == 0.0 and logs[-1]["aft/beta"] == pytest.approx(BETA)


def test_constant_beta_without_warmup(tmp_path):
    trainer = _trainer(tmp_path, steps=3, beta_warmup=0)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    for h in logs:
        assert h["aft/beta"] == BETA
        assert h["loss"] == pytest.approx(h["aft/task_loss"] + BETA * h["aft/loss"], rel=1e-4)


def test_beta_zero_leaves_task_loss_and_regularizer_lr_is_used(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path / "o"), max_steps=1, per_device_train_batch_size=8,
                             logging_steps=1, report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True)
    kd = aft.regularizers.build("kd", student_dim=HIDDEN, teacher_dim=TEACHER_DIM)
    trainer = AFTTrainer(model=_model(), args=args, train_dataset=ListDataset(_rows()), regularizer=kd, beta=0.0,
                         regularizer_lr=0.123, data_collator=TeacherFeatureCollator(_features()))
    trainer.train()
    kd_params = set(map(id, kd.parameters()))
    lrs = {g["initial_lr"] for g in trainer.optimizer.param_groups if kd_params & set(map(id, g["params"]))}
    assert lrs == {0.123}
    h = next(h for h in trainer.state.log_history if "loss" in h)
    assert h["loss"] == pytest.approx(h["aft/task_loss"], rel=1e-5, abs=5e-5)  # transformers < 4.46 rounds it to 4 places


def test_evaluate_without_teacher_features_reports_task_loss(tmp_path):
    trainer = _trainer(tmp_path, data_collator=TeacherFeatureCollator(_features(), on_missing="omit"))
    eval_rows = _rows("e")[:8]  # ids without features
    metrics = trainer.evaluate(ListDataset(eval_rows))
    model = trainer.model.eval()
    with torch.no_grad():
        expected = model(input_ids=torch.stack([r["input_ids"] for r in eval_rows]),
                         attention_mask=torch.stack([r["attention_mask"] for r in eval_rows]),
                         labels=torch.stack([r["labels"] for r in eval_rows])).loss
    assert metrics["eval_loss"] == pytest.approx(float(expected), rel=1e-4)


def test_training_batch_without_features_is_an_error(tmp_path):
    trainer = _trainer(tmp_path, data_collator=TeacherFeatureCollator(_features(), on_missing="omit"))
    trainer.train_dataset = ListDataset(_rows("u"))
    with pytest.raises(ConfigError, match="teacher_features"):
        trainer.train()


def test_regularizer_state_saved_and_restored(tmp_path):
    trainer = _trainer(tmp_path, steps=2)
    trainer.train()
    trainer.save_model(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / REGULARIZER_WEIGHTS).is_file()
    fresh = _trainer(tmp_path)
    assert float(fresh.regularizer.s.detach().abs().max()) == 0.0
    fresh._load_from_checkpoint(str(tmp_path / "ckpt"))
    torch.testing.assert_close(fresh.regularizer.s.detach(), trainer.regularizer.s.detach())


def test_bad_arguments(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    reg = aft.regularizers.build("aft", student_dim=HIDDEN, teacher_dim=TEACHER_DIM)
    with pytest.raises(ConfigError, match="beta"):
        AFTTrainer(model=_model(), args=args, regularizer=reg, beta=-1.0)
    with pytest.raises(ConfigError, match="regularizer_lr"):
        AFTTrainer(model=_model(), args=args, regularizer=reg, regularizer_lr=0.0)
    with pytest.raises(ConfigError, match="Regularizer"):
        AFTTrainer(model=_model(), args=args, regularizer=torch.nn.Linear(2, 2))  # type: ignore[arg-type]
