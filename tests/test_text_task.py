"""`minrnn train text`: your own UTF-8 text (a file or a folder), character- or byte-level,
memory-mapped tokens, held-out split, the tokenizer saved with the run; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minrnn.cli import main
from minrnn.data.corpus import load_corpus
from minrnn.data.text import ByteTokenizer, CharTokenizer, random_windows, tokenizer_from_dict
from minrnn.pretrained import load_run

TINY = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "16", "--eval-every", "2", "--eval-iters", "1"]
TEXT = "Hello, wörld! ünïcödé ✓ 雪\n" * 20


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_char_corpus_matches_the_in_memory_tokenizer(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    corpus = load_corpus(tmp_path / "a.txt")
    tok = CharTokenizer.from_text(TEXT)
    assert corpus.tokenizer.chars == tok.chars
    assert isinstance(corpus.tokens, np.memmap)
    assert np.array_equal(np.asarray(corpus.tokens, dtype=np.int64), tok.encode(TEXT).numpy())
    train, val = corpus.split(0.1)
    assert len(train) == int(len(TEXT) * 0.9) and len(train) + len(val) == len(TEXT)
    assert corpus.tokenizer.decode(np.asarray(val)) == TEXT[len(train):]


def test_folder_of_files_in_sorted_order_bytes_and_cache(tmp_path):
    data = tmp_path / "texts"
    (data / "sub").mkdir(parents=True)
    (data / "b.txt").write_text("second ✓", encoding="utf-8")
    (data / "a.txt").write_text("first ", encoding="utf-8")
    (data / "sub" / "c.md").write_text(" third", encoding="utf-8")
    (data / ".hidden").write_bytes(b"\xff not read")
    corpus = load_corpus(data, "byte")
    assert [p.name for p in corpus.files] == ["a.txt", "b.txt", "c.md"]
    assert isinstance(corpus.tokenizer, ByteTokenizer)
    assert bytes(np.asarray(corpus.tokens)).decode() == "first second ✓ third"
    assert load_corpus(data, "byte").cache == corpus.cache  # encoded once, then mapped
    (data / "a.txt").write_text("FIRST ", encoding="utf-8")  # a changed file is encoded again
    assert load_corpus(data, "byte").cache != corpus.cache


def test_windows_from_a_memory_map_equal_windows_from_a_tensor(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    tokens = load_corpus(tmp_path / "a.txt").tokens
    x1, y1 = random_windows(tokens, 5, 7, torch.Generator().manual_seed(1))
    x2, y2 = random_windows(torch.from_numpy(np.asarray(tokens, dtype=np.int64)), 5, 7, torch.Generator().manual_seed(1))
    assert x1.dtype == torch.int64 and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1])


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_train_text_then_sample_and_load(tmp_path, capsys, kind):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "text", "--data", str(tmp_path / "a.txt"), "--tokenizer", kind, "--out", str(out), "--steps", "2", *TINY]
    assert main(argv) == 0
    model, ckpt, _ = load_run(out)
    tok = tokenizer_from_dict(ckpt["tokenizer"])
    assert tok.kind == kind and model.config.vocab_size == tok.vocab_size == (256 if kind == "byte" else len(set(TEXT)))
    capsys.readouterr()
    assert main(["sample", str(out), "--prompt", "wö", "--tokens", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("wö")


@pytest.mark.parametrize("case, flags, message", [
    ("missing", ["--data", "{tmp}/nope.txt"], "nope.txt: no such file or folder"),
    ("no data", [], "needs --data PATH"),
    ("empty file", ["--data", "{tmp}/empty.txt"], "holds no text"),
    ("empty folder", ["--data", "{tmp}/emptydir"], "is a folder without files"),
    ("latin-1", ["--data", "{tmp}/dir"], "latin1.txt is not UTF-8 text"),
    ("too short", ["--data", "{tmp}/short.txt"], "the validation split has 2 tokens, need more than --context 16"),
    ("vocab", ["--data", "{tmp}/ok.txt", "--vocab-size", "99"], "vocab_size is 99, but"),
    ("tokenizer", ["--data", "{tmp}/ok.txt", "--tokenizer", "bpe"], "tokenizer must be one of"),
    ("val fraction", ["--data", "{tmp}/ok.txt", "--val-fraction", "1"], "val_fraction must be in (0, 1)"),
])
def test_bad_data_is_a_one_line_error(tmp_path, capsys, case, flags, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "good.txt").write_text("fine text " * 20)
    (tmp_path / "dir" / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    (tmp_path / "short.txt").write_text("x" * 20)
    (tmp_path / "ok.txt").write_text(TEXT)
    argv = ["train", "text", "--out", str(tmp_path / "run"), "--steps", "1", *TINY, *(f.format(tmp=tmp_path) for f in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("minrnn: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "ckpt.safetensors").exists()


def test_byte_tokenizer_round_trip_and_streamed_decoding():
    tok = ByteTokenizer()
    ids = tok.encode("é✓ ok")
    assert ids.tolist()[:2] == [0xC3, 0xA9] and tok.decode(ids) == "é✓ ok" and tok.encode("").shape == (0,)
    decode = tok.stream_decoder()
    pieces = [decode([i]) for i in ids]  # a character split across tokens comes out whole, once
    assert "".join(pieces) == "é✓ ok" and pieces[:2] == ["", "é"]
    assert tokenizer_from_dict(tok.to_dict()).kind == "byte"
    assert tokenizer_from_dict("abc").decode([2, 0]) == "ca"  # a Shakespeare run's stored characters
    with pytest.raises(ValueError, match="a tokenizer must be"):
        tokenizer_from_dict({"type": "bpe"})


def test_window_validation_reads_the_held_out_split_of_the_text(tmp_path):
    """--validation windows on your own text: fixed windows of its memory-mapped validation split."""
    import json

    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "text", "--data", str(tmp_path / "a.txt"), "--out", str(out), *TINY, "--steps", "2",
                 "--validation", "windows", "--val-windows", "3"]) == 0
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert evals and all(r["val_windows"] == 3 for r in evals)
