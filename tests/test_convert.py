"""lucidrains' minGRU-pytorch weights in minrnn: outputs equal (skipped where the package is absent)."""

from __future__ import annotations

import pytest
import torch

from minrnn.convert import LucidrainsLayer, from_lucidrains
from minrnn.models import MinRNNLM

lucid = pytest.importorskip("minGRU_pytorch")
from minGRU_pytorch.minLM import minLM  # noqa: E402
from minGRU_pytorch.minLSTM import minLSTM  # noqa: E402


def _perturb(module):
    """Random weights everywhere (their norms start at 1), so that every mapped tensor matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("expansion", [1.0, 1.5])
def test_layer_outputs_equal(cell, expansion):
    torch.manual_seed(0)
    theirs = _perturb((lucid.minGRU if cell == "mingru" else minLSTM)(12, expansion_factor=expansion)).double()
    ours = from_lucidrains(theirs)
    assert isinstance(ours, LucidrainsLayer)
    x = torch.randn(3, 17, 12, dtype=torch.float64)
    with torch.no_grad():
        want, want_h = theirs(x, return_next_prev_hidden=True)
        got, h = ours(x)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(h.transpose(0, 1), want_h, rtol=1e-9, atol=1e-9)
        # one step on from that state: their sequential mode
        x1 = torch.randn(3, 1, 12, dtype=torch.float64)
        torch.testing.assert_close(ours(x1, h)[0], theirs(x1, want_h), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("use_lstm", [False, True])
def test_minlm_logits_equal_and_generation_steps_match(use_lstm, tmp_path):
    torch.manual_seed(0)
    theirs = _perturb(minLM(num_tokens=37, dim=16, depth=2, ff_mult=3, expansion=1.5, use_lstm=use_lstm)).eval()
    path = tmp_path / "minlm.pt"
    torch.save(theirs.state_dict(), path)  # a checkpoint as their train.py would leave it
    ours = from_lucidrains(path)
    assert isinstance(ours, MinRNNLM) and ours.config.cell == ("minlstm" if use_lstm else "mingru")
    idx = torch.randint(0, 37, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], theirs(idx), rtol=1e-4, atol=1e-4)
        greedy = ours.generate(idx[:, :5], 10, temperature=0)
        seq = idx[:, :5]
        for _ in range(10):  # their model re-reading the whole sequence
            seq = torch.cat([seq, theirs(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy, seq)
    ours.save_pretrained(tmp_path / "converted")
    again = MinRNNLM.from_pretrained(tmp_path / "converted")
    with torch.no_grad():
        assert torch.equal(again(idx)[0], ours(idx)[0])


def test_cli_convert_writes_a_model_folder(tmp_path, capsys):
    from minrnn import load
    from minrnn.cli import main

    torch.manual_seed(0)
    theirs = _perturb(minLM(num_tokens=256, dim=8, depth=1)).eval()
    torch.save(theirs.state_dict(), tmp_path / "enwik8.pt")
    assert main(["convert", "lucidrains", str(tmp_path / "enwik8.pt"), "--out", str(tmp_path / "m"), "--tokenizer", "byte"]) == 0
    model, tok = load(tmp_path / "m")
    ids = tok.encode("hello")[None]
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], theirs(ids), rtol=1e-4, atol=1e-4)
    torch.save(lucid.minGRU(8).state_dict(), tmp_path / "layer.pt")
    assert main(["convert", "lucidrains", str(tmp_path / "layer.pt"), "--out", str(tmp_path / "l")]) == 2
    assert "not a minLM" in capsys.readouterr().err


def test_what_does_not_map_is_refused(tmp_path):
    with pytest.raises(ValueError, match="enable_conv=True"):
        from_lucidrains(minLM(num_tokens=10, dim=8, depth=1, enable_conv=True))
    with pytest.raises(ValueError, match="not a minGRU-pytorch"):
        from_lucidrains({"weight": torch.zeros(2)})
    with pytest.raises(FileNotFoundError):
        from_lucidrains(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="torch.load"):
        from_lucidrains(tmp_path / "junk.pt")
