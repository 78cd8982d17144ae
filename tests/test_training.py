"""Training: schedules, exact resume from a checkpoint, early stopping, learning to copy."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from attnlib.training import (
    Trainer,
    batch_loss,
    noam_schedule,
    seed_everything,
    train_model,
    warmup_cosine_schedule,
)
from attnlib.transformer import EncoderClassifier, Seq2SeqTransformer

BOS, EOS = 1, 2


def copy_task(n, length=6, vocab=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(3, vocab, (n, length), generator=g)
    tgt = torch.cat([torch.full((n, 1), BOS), body, torch.full((n, 1), EOS)], 1)
    return TensorDataset(body, tgt)


def small_model():
    return Seq2SeqTransformer(10, 10, 32, 4, 1, 1, 64, dropout=0.0)


def test_noam_schedule_peaks_at_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = noam_schedule(opt, d_model=64, warmup=10)
    rates = []
    for _ in range(40):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(40), key=rates.__getitem__)
    assert peak == 10
    assert rates[10] == pytest.approx(64**-0.5 * 10**-0.5)


def test_warmup_cosine_goes_up_then_down_to_min():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine_schedule(opt, warmup=5, total=20, min_ratio=0.1)
    rates = []
    for _ in range(25):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[4] == pytest.approx(2.0)
    assert rates[:5] == sorted(rates[:5]) and rates[5:21] == sorted(rates[5:21], reverse=True)
    assert rates[24] == pytest.approx(0.2)


def test_resumed_checkpoint_equals_uninterrupted_run(tmp_path):
    data = copy_task(64)

    def run(epochs_before_stop=None):
        seed_everything(0)
        model = small_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(data, batch_size=16, shuffle=True)
        trainer = Trainer(model, opt, noam_schedule(opt, 32, 4), device="cpu", verbose=False)
        if epochs_before_stop is None:
            trainer.fit(loader, epochs=4)
            return model
        trainer.fit(loader, epochs=epochs_before_stop)
        trainer.save(tmp_path / "ckpt.pt")
        torch.manual_seed(123)  # disturb the RNG: resume must restore it
        model2 = small_model()
        opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
        resumed = Trainer(model2, opt2, noam_schedule(opt2, 32, 4), device="cpu", verbose=False)
        resumed.load(tmp_path / "ckpt.pt")
        resumed.fit(loader, epochs=4 - epochs_before_stop)
        assert len(resumed.history) == 4
        return model2

    straight, resumed = run(), run(epochs_before_stop=2)
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_early_stopping_restores_best_weights():
    seed_everything(0)
    model = EncoderClassifier(10, 2, d_model=16, nhead=2, num_layers=1, dim_feedforward=16)
    x = torch.randint(1, 10, (32, 5))
    train = DataLoader(TensorDataset(x, torch.randint(0, 2, (32,))), batch_size=8)
    val = DataLoader(TensorDataset(x, torch.randint(0, 2, (32,))), batch_size=8)  # noise
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    trainer = Trainer(model, opt, device="cpu", patience=2, verbose=False)
    history = trainer.fit(train, val, epochs=30)
    assert len(history) < 30
    best = min(row["val_loss"] for row in history)
    assert trainer.evaluate(val)["loss"] == pytest.approx(best, rel=1e-5)


def test_patience_restores_best_weights_without_stopping_early():
    seed_everything(0)
    model = EncoderClassifier(10, 2, d_model=16, nhead=2, num_layers=1, dim_feedforward=16)
    x = torch.randint(1, 10, (32, 5))
    train = DataLoader(TensorDataset(x, torch.randint(0, 2, (32,))), batch_size=8)
    val = DataLoader(TensorDataset(x, torch.randint(0, 2, (32,))), batch_size=8)  # noise
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    trainer = Trainer(model, opt, device="cpu", patience=100, verbose=False)
    history = trainer.fit(train, val, epochs=6)
    losses = [row["val_loss"] for row in history]
    assert len(history) == 6 and min(losses) < losses[-1]  # the last epoch is not the best
    assert trainer.evaluate(val)["loss"] == pytest.approx(min(losses), rel=1e-5)


def test_train_model_returns_per_epoch_history():
    seed_everything(0)
    model = small_model()
    loader = DataLoader(copy_task(64), batch_size=32)
    history = train_model(model, loader, torch.optim.Adam(model.parameters(), 1e-3), 3)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]


def test_batch_loss_ignores_padding():
    model = small_model()
    src = torch.randint(3, 10, (2, 4))
    tgt = torch.tensor([[BOS, 5, 6, EOS, 0, 0], [BOS, 7, 8, 9, 4, EOS]])
    _, _, count = batch_loss(model, (src, tgt))
    assert count == 3 + 5
