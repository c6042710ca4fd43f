"""save_pretrained / from_pretrained / minrnn.load: every model kind round-trips exactly, offline."""

from __future__ import annotations

import json

import pytest
import torch

import minrnn
from minrnn.cli import main
from minrnn.data.text import ByteTokenizer, CharTokenizer
from minrnn.models import MinRNNLM, RNNLM, TransformerLM, build_model, model_config
from minrnn.models.decision import DecisionModel
from minrnn.models.registry import MODEL_KINDS
from tests.helpers import kind_params

SMALL = {"vocab_size": 13, "d_model": 12, "n_layers": 2, "dropout": 0.1, "n_heads": 3, "expansion": 1.5, "tie_weights": True}


def lm(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    arch, cfg = model_config(kind, {k: v for k, v in SMALL.items() if k in ("vocab_size", "d_model", "n_layers", "dropout")
                                    or k in MODEL_KINDS[kind].options}, 32)
    return build_model(arch, cfg).eval()


@pytest.mark.parametrize("kind", kind_params(MODEL_KINDS))
def test_lm_round_trip_gives_equal_logits(kind, tmp_path):
    model = lm(kind)
    tok = CharTokenizer("abcdefghijklm")
    model.save_pretrained(tmp_path / "m", tokenizer=tok)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    loaded = type(model).from_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and not loaded.training and loaded.config == model.config
    idx = torch.randint(0, 13, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], loaded(idx)[0])
    again, tok2 = minrnn.load(tmp_path / "m")
    assert tok2.chars == tok.chars and torch.equal(again(idx)[0], model(idx)[0])
    if kind == "transformer":  # tied head: one tensor after loading too
        assert loaded.head.weight is loaded.embed.weight


@pytest.mark.parametrize("backbone", [k for k, spec in MODEL_KINDS.items() if spec.backbone is not None])
def test_decision_model_round_trip(backbone, tmp_path):
    torch.manual_seed(0)
    settings = {"state_dim": 3, "act_dim": 2, "d_model": 12, "n_layers": 1, "dropout": 0.0, "expansion": 1.5,
                "mlp_ratio": 2.0, "n_heads": 2, "max_ep_len": 50}
    arch, cfg = model_config(backbone, settings, 4, "decision")
    model = build_model(arch, cfg).eval()
    model.save_pretrained(tmp_path / "d")
    loaded = DecisionModel.from_pretrained(tmp_path / "d")
    args = (torch.randn(2, 4, 1), torch.randn(2, 4, 3), torch.randn(2, 4, 2), torch.randint(0, 50, (2, 4)))
    with torch.no_grad():
        assert torch.equal(model(*args), loaded(*args))
    assert minrnn.load(tmp_path / "d")[1] is None  # no tokenizer saved


def test_dtype_and_byte_tokenizer_survive(tmp_path):
    model = lm("minlstm").double()
    model.save_pretrained(tmp_path / "m", tokenizer=ByteTokenizer())
    loaded, tok = minrnn.load(tmp_path / "m")
    assert loaded.embed.weight.dtype == torch.float64 and isinstance(tok, ByteTokenizer)


def test_from_pretrained_refuses_another_class_and_broken_folders(tmp_path):
    lm("transformer").save_pretrained(tmp_path / "t")
    with pytest.raises(ValueError, match="holds a TransformerLM, not a MinRNNLM"):
        MinRNNLM.from_pretrained(tmp_path / "t")
    with pytest.raises(FileNotFoundError, match="no model or run folder"):
        RNNLM.from_pretrained(tmp_path / "nothing")
    (tmp_path / "t" / "config.json").write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(ValueError, match="not the config of a minrnn model folder"):
        TransformerLM.from_pretrained(tmp_path / "t")
    lm("mingru").save_pretrained(tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["model"]["d_model"] = 16
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not fit its config.json"):
        minrnn.load(tmp_path / "g")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a model folder"):
        minrnn.load(tmp_path / "empty")


def test_load_a_run_folder_gives_its_best_checkpoint_and_tokenizer(tmp_path):
    out = tmp_path / "run"
    flags = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-every", "2", "--eval-iters", "1"]
    assert main(["train", "shakespeare", "--out", str(out), "--steps", "2", *flags]) == 0
    model, tok = minrnn.load(out)
    assert isinstance(model, MinRNNLM) and tok.vocab_size == 65 and tok.decode(tok.encode("ROMEO:")) == "ROMEO:"
    model.save_pretrained(tmp_path / "m", tokenizer=tok)  # a run exported as a model folder
    again, tok2 = minrnn.load(tmp_path / "m")
    idx = tok.encode("ROMEO:")[None]
    with torch.no_grad():
        assert torch.equal(again(idx)[0], model(idx)[0]) and tok2.chars == tok.chars


def test_a_hub_id_is_downloaded_with_huggingface_hub(tmp_path, monkeypatch):
    """Offline: huggingface_hub's snapshot_download is replaced by a local folder."""
    hub = pytest.importorskip("huggingface_hub")
    lm("gru").save_pretrained(tmp_path / "snapshot", tokenizer=CharTokenizer("abcdefghijklm"))
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs["revision"], kwargs["allow_patterns"]))
        if repo_id != "someone/tiny-gru":
            raise hub.errors.RepositoryNotFoundError("404 Client Error: Repository Not Found")
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.chdir(tmp_path)
    model, tok = minrnn.load("someone/tiny-gru", revision="v1")
    assert isinstance(model, RNNLM) and tok.vocab_size == 13
    assert calls == [("someone/tiny-gru", "v1", ["config.json", "model.safetensors", "tokenizer.json"])]
    assert isinstance(RNNLM.from_pretrained("someone/tiny-gru"), RNNLM)
    with pytest.raises(FileNotFoundError, match="no folder someone/typo, and downloading it from the Hugging Face Hub failed"):
        minrnn.load("someone/typo")
    with pytest.raises(FileNotFoundError, match="no model or run folder at runs/a/b"):
        minrnn.load("runs/a/b")
