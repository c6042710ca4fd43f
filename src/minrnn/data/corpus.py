"""Your own text as training data: a UTF-8 file, or a folder of them, encoded once into a
memory-mapped token file (as nanoGPT's prepare step writes train.bin).

The text is read once, in chunks, never whole into a Python string: each chunk is checked as
UTF-8 and turned into code points (character-level) or bytes (byte-level) with numpy, and written
to disk. Character-level ids are the sorted distinct characters (as nanoGPT's and
`CharTokenizer.from_text`'s), so Tiny Shakespeare gets the same 65 ids as the Shakespeare task.

The encoded tokens go into a cache folder keyed by the files' paths, sizes and modification times
and the tokenizer (``$XDG_CACHE_HOME/minrnn/text/<key>``, or ``cache=``): a second run on the same
text, or a resumed one, maps the file again instead of encoding it. The held-out split is the last
``val_fraction`` of the token stream (files concatenated in sorted path order).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minrnn.data.text import TOKENIZERS, ByteTokenizer, CharTokenizer, Tokenizer, tokenizer_from_dict

CHUNK_BYTES = 1 << 22  # 4 MiB of text per chunk
FORMAT = 1  # of the cache folder


@dataclass
class TokenCorpus:
    """Encoded text: ``tokens`` (N,) is a read-only memory map of uint8 / uint16 / uint32 ids."""

    tokenizer: Tokenizer
    tokens: np.ndarray
    files: list[Path]
    cache: Path

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train, val): the first 1 - val_fraction of the tokens and the rest (views, no copy)."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        n_train = int(len(self.tokens) * (1.0 - val_fraction))  # nanoGPT's: int(n * 0.9)
        return self.tokens[:n_train], self.tokens[n_train:]


def text_files(path: str | os.PathLike) -> list[Path]:
    """The file ``path``, or every file under the folder ``path`` (recursively, sorted; hidden
    files and folders, named ``.*``, are skipped)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"--data {p}: no such file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
    if not files:
        raise ValueError(f"--data {p} is a folder without files; give a UTF-8 text file or a folder of them")
    return files


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minrnn" / "text"


def _key(files: list[Path], tokenizer: str) -> str:
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps([FORMAT, tokenizer, stats]).encode()).hexdigest()[:20]


def load_corpus(path: str | os.PathLike, tokenizer: str = "char", cache: str | os.PathLike | None = None) -> TokenCorpus:
    """Encode the text at ``path`` (a file or a folder, see `text_files`) with a ``"char"`` or
    ``"byte"`` tokenizer, or map its cached encoding. A file that is not UTF-8 is a ValueError
    naming it; so is text that holds no characters at all."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, got {tokenizer!r}")
    files = text_files(path)
    folder = Path(cache) if cache is not None else default_cache()
    target = folder / _key(files, tokenizer)
    if not (target / "meta.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".encode-", dir=folder))
        try:
            _encode(files, tokenizer, tmp, path)
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / "meta.json").is_file():  # not another process that got there first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((target / "meta.json").read_text(encoding="utf-8"))
    tokens = np.memmap(target / "tokens.bin", dtype=meta["dtype"], mode="r", shape=(meta["n_tokens"],))
    return TokenCorpus(tokenizer_from_dict(meta["tokenizer"]), tokens, files, target)


def _chunks(file: Path):
    """Yield (raw bytes, decoded text) of ``file`` chunk by chunk; not UTF-8 is a ValueError."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0
    with open(file, "rb") as f:
        while True:
            raw = f.read(CHUNK_BYTES)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise ValueError(f"{file} is not UTF-8 text ({e.reason} near byte {done + max(e.start - len(decoder.getstate()[0]), 0)}); "
                                 f"convert it to UTF-8 (e.g. iconv -t UTF-8) or leave it out of --data") from None
            yield raw, text
            if not raw:
                return
            done += len(raw)


def _encode(files: list[Path], tokenizer: str, out: Path, path) -> None:
    """Write ``tokens.bin`` and ``meta.json`` of ``files`` into the folder ``out``."""
    n = 0
    if tokenizer == "byte":
        with open(out / "tokens.bin", "wb") as f:
            for file in files:
                for raw, _ in _chunks(file):
                    f.write(raw)
                    n += len(raw)
        dtype, tok = "uint8", ByteTokenizer()
    else:
        seen = np.zeros(0, dtype=np.uint32)
        with open(out / "points.bin", "wb") as f:  # code points, 4 bytes each, mapped to ids below
            for file in files:
                for _, text in _chunks(file):
                    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                    seen = np.union1d(seen, np.unique(points))
                    f.write(points.tobytes())
                    n += len(points)
        if n:
            tok = CharTokenizer("".join(map(chr, seen.tolist())))  # sorted: union1d sorts
            dtype = "uint16" if len(seen) <= 1 << 16 else "uint32"
            lut = np.zeros(int(seen[-1]) + 1, dtype=dtype)
            lut[seen] = np.arange(len(seen), dtype=dtype)
            points = np.memmap(out / "points.bin", dtype=np.uint32, mode="r", shape=(n,))
            with open(out / "tokens.bin", "wb") as f:
                for i in range(0, n, CHUNK_BYTES):
                    f.write(lut[points[i : i + CHUNK_BYTES]].tobytes())
            del points
        (out / "points.bin").unlink()
    if n == 0:
        raise ValueError(f"--data {path} holds no text (every file is empty)")
    meta = {"format": FORMAT, "tokenizer": tok.to_dict(), "dtype": dtype, "n_tokens": n,
            "files": [str(f) for f in files]}
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
