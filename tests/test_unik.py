"""UNIK encoder: exact parameter count, forward/backward for 2D/3D and 1/2 persons, checkpoints."""

from __future__ import annotations

import pytest
import torch

from tmor.model.checkpoint import load_checkpoint, load_encoder, save_checkpoint
from tmor.model.unik import UNIK, count_parameters


def test_parameter_count_reference_config() -> None:
    n = count_parameters(UNIK(in_channels=2, num_joints=17, num_persons=2, num_heads=3))
    assert n == 3_443_494  # our reading of the reference (its unused (V,) bias left out)
    assert abs(n - 3.45e6) / 3.45e6 < 0.01


@pytest.mark.parametrize("c,v,m", [(2, 17, 1), (2, 17, 2), (3, 25, 1), (3, 25, 2)])
def test_forward_backward(c: int, v: int, m: int) -> None:
    torch.manual_seed(0)
    model = UNIK(in_channels=c, num_joints=v, num_persons=m)
    x = torch.randn(3, c, 16, v, m)
    z = model(x)
    assert z.shape == (3, 256)
    assert torch.isfinite(z).all()
    feats = model.forward_features(x)
    assert feats.shape == (3, 256, 4, v)
    torch.testing.assert_close(feats.mean(dim=(2, 3)), z, rtol=1e-5, atol=1e-5)
    z.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # every block's dependency matrix and attention projections receive gradient
    assert all(layer.s_unit.dep.grad.abs().sum() > 0 for layer in model.layers)


def test_wrong_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected"):
        UNIK(2, 17, 2)(torch.randn(1, 3, 8, 17, 2))


def test_checkpoint_roundtrip(tmp_path) -> None:
    torch.manual_seed(1)
    model = UNIK(in_channels=3, num_joints=25, num_persons=2)
    model.train()
    model(torch.randn(4, 3, 12, 25, 2))  # move BatchNorm running stats off their init
    model.eval()
    url = str(tmp_path / "ck" / "last.pt")
    save_checkpoint(url, model, train_config={"lr": 0.1}, step=7)
    ck = load_checkpoint(url)
    assert ck["model_config"]["num_joints"] == 25 and ck["train_config"] == {"lr": 0.1}
    assert ck["step"] == 7 and ck["heads"] is None
    again = load_encoder(url)
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
