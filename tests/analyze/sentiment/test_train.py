"""Training helpers: CSV validation, the seeded split, temperature scaling."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze.sentiment.train import DataError, load_splits, read_labelled_csv, split_of


def test_read_csv_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("label,text\n1,好\n0,差\n2,怪\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.csv:4: label must be 0 or 1"):
        read_labelled_csv(path)
    path.write_text("score,body\n1,好\n", encoding="utf-8")
    with pytest.raises(DataError, match="label,text"):
        read_labelled_csv(path)
    path.write_bytes(b"label,text\n1,\xff\xfe\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_labelled_csv(path)
    with pytest.raises(DataError, match="not found"):
        read_labelled_csv(tmp_path / "missing.csv")


def test_read_csv_ok(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('label,text,category\n1,"好,很好",a\n0,差,b\n', encoding="utf-8")
    rows = read_labelled_csv(path)
    assert [(r.label, r.text) for r in rows] == [(1, "好,很好"), (0, "差")]


def test_split_is_seeded_and_order_free() -> None:
    texts = [f"评论{i}" for i in range(4000)]
    first = [split_of(t, seed=42) for t in texts]
    assert first == [split_of(t, seed=42) for t in texts]
    assert first != [split_of(t, seed=7) for t in texts]
    share = {s: first.count(s) / len(first) for s in ("train", "val", "test")}
    assert share["test"] == pytest.approx(0.10, abs=0.02)
    assert share["val"] == pytest.approx(0.05, abs=0.015)


def test_load_splits_needs_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "nope")


def test_fit_temperature_recovers_a_known_temperature() -> None:
    torch = pytest.importorskip("torch")
    from analyze.sentiment.train import fit_temperature

    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 2, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=gen).squeeze(1)
    # The model is over-confident by 3x; the fitted temperature must undo it.
    assert fit_temperature(true_logits * 3, labels.tolist()) == pytest.approx(3.0, rel=0.15)


def test_head_tail_keeps_both_ends_of_a_long_sequence() -> None:
    from analyze.sentiment.transformer import head_tail

    ids = list(range(1000))
    cut = head_tail(ids, 160)
    assert len(cut) == 160
    assert cut[:100] == ids[:100] and cut[100:] == ids[-60:]  # [CLS]… head, …[SEP] tail
    assert head_tail(ids[:50], 160) == ids[:50]


GOOD = ["很好吃，送得也快", "房间干净，服务热情", "质量不错，很满意", "味道很好，下次还点", "物流快，东西好"]
BAD = ["太难吃了，还凉了", "房间很脏，隔音差", "质量太差，坏了", "等了两小时，再也不点", "客服不理人，退货"]


def _write_corpora(directory: Path, copies: int = 6) -> None:
    directory.mkdir()
    for name in ("waimai", "hotel", "shopping"):
        rows = [f"{1},{t}{i}{name}" for i in range(copies) for t in GOOD]
        rows += [f"{0},{t}{i}{name}" for i in range(copies) for t in BAD]
        (directory / f"{name}.dev.csv").write_text("label,text\n" + "\n".join(rows) + "\n", encoding="utf-8")


def _train_tiny(tmp_path: Path, **recipe: object) -> dict:
    """Train a tiny model on the toy corpora into ``tmp_path/model`` (seconds, not minutes)."""
    from analyze.sentiment.train import TrainConfig, train_model

    data = tmp_path / "data"
    _write_corpora(data)
    config = TrainConfig(vocab_size=300, hidden=32, layers=1, heads=2, intermediate=64, max_length=32,
                         batch_size=8, threads=1, evals_per_epoch=2, **recipe)  # type: ignore[arg-type]
    return train_model(tmp_path / "model", data_dir=data, config=config)


@pytest.mark.parametrize("kind", ["tfidf", "ngram-ensemble"])
def test_teacher_probabilities_cover_every_text_and_follow_the_labels(kind: str) -> None:
    from analyze.sentiment.train import LabelledText, teacher_probabilities

    rows = [LabelledText(1, f"{t}{i}") for i in range(8) for t in GOOD]
    rows += [LabelledText(0, f"{t}{i}") for i in range(8) for t in BAD]
    probs = teacher_probabilities(rows + rows[:5], folds=4, seed=1, kind=kind)  # duplicates are one text
    assert set(probs) == {r.text for r in rows}
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    mean_good = sum(probs[r.text] for r in rows if r.label == 1) / sum(r.label for r in rows)
    mean_bad = sum(probs[r.text] for r in rows if r.label == 0) / sum(1 - r.label for r in rows)
    assert mean_good > 0.5 > mean_bad


def test_an_unknown_teacher_is_refused_by_name() -> None:
    from analyze.sentiment.train import LabelledText, teacher_probabilities

    with pytest.raises(ValueError, match="unknown teacher 'bert'"):
        teacher_probabilities([LabelledText(1, "好")], folds=2, seed=1, kind="bert")


def test_train_model_end_to_end_with_pretraining_and_distillation(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from analyze.sentiment.transformer import TransformerSentiment

    info = _train_tiny(tmp_path, epochs=2, pretrain_minutes=0.05, distill=0.5, distill_folds=2)
    assert info["pretrain"]["steps"] > 0 and info["steps"] > 0
    assert set(info["best"]["val"]) == {"waimai", "hotel", "shopping"}
    model = TransformerSentiment(tmp_path / "model", threads=1)
    assert model.max_length == 32  # the trained length, read from the model directory
    scores = model.predict_negative(["很好吃，送得也快", "太难吃了，还凉了" * 40])
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_two_fine_tunes_from_one_pretraining_are_souped_when_val_agrees(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from safetensors.torch import load_file

    info = _train_tiny(tmp_path, epochs=1, pretrain_minutes=0.02, distill=0.0, finetunes=2)
    runs = info["finetunes"]
    assert len(runs) == 2 and all(r["steps"] > 0 for r in runs)
    assert {h["run"] for h in info["history"]} == {0, 1}
    soup = info["soup"]
    best_single = max(r["best"]["val_accuracy"] for r in runs)
    assert soup["kept"] == (soup["val_accuracy"] >= best_single)
    assert info["best"]["val_accuracy"] == max(soup["val_accuracy"], best_single)
    assert (info["best"]["step"] == "soup") == soup["kept"]
    assert load_file(str(tmp_path / "model" / "model.safetensors"))  # the kept weights were written


def test_average_states_means_floats_and_keeps_integer_buffers() -> None:
    import torch

    from analyze.sentiment.train import average_states

    a = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([0, 1, 2])}
    b = {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([0, 1, 2])}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(out["ids"], a["ids"]) and out["ids"].dtype == torch.long
    assert out["ids"] is not a["ids"]  # a copy: later training must not move the soup


def test_train_config_refuses_zero_fine_tunes() -> None:
    from analyze.sentiment.train import TrainConfig

    with pytest.raises(ValueError, match="finetunes must be at least 1"):
        TrainConfig(finetunes=0)


def test_stepper_averages_weights_and_swaps_them_in_only_inside_the_context() -> None:
    import torch

    from analyze.sentiment.train import _Stepper

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    stepper = _Stepper(layer.parameters(), opt, sched, ema=0.9)
    start = layer.weight.detach().clone()
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    for _ in range(30):
        stepper(torch.nn.functional.mse_loss(layer(x), y))
    live = layer.weight.detach().clone()
    assert stepper.step_count == 30 and stepper.loss > 0
    assert not torch.equal(live, start)
    with stepper.swapped():
        averaged = layer.weight.detach().clone()
    # The average trails the live weights (it lies between start and now) and the live ones come back.
    assert not torch.allclose(averaged, live)
    assert torch.equal(layer.weight.detach(), live)
    assert torch.all((averaged - start).abs() <= (live - start).abs() + 1e-6)

    plain = _Stepper(layer.parameters(), opt, sched)
    plain(torch.nn.functional.mse_loss(layer(x), y))
    with plain.swapped():
        assert torch.equal(layer.weight.detach(), next(iter(layer.parameters())).detach())


def test_train_cli_refuses_an_unknown_teacher_before_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from core.cli import app

    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "sentiment", "--teacher", "bert", "--out", str(out),
                                      "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "--teacher" in result.output and "ngram-ensemble" in result.output
    assert not out.exists()
