"""Progress of long steps: plain lines with rate and ETA in logs, a bar on a terminal; chunked encodes give the same vectors."""

import numpy as np

from recsys_assets.lib.features.embeddings import PROGRESS_MIN_TEXTS, _encode_with_progress
from recsys_assets.lib.features.encoders import EncoderConfig, TfidfEncoder
from recsys_assets.lib.progress import progress


def test_lines_mode_logs_count_rate_and_eta(monkeypatch):
    monkeypatch.setenv("RECSYS_PROGRESS", "lines")
    lines: list[str] = []
    out = list(progress(range(5), desc="day_job", unit="day", log=lines.append, min_interval_s=3600))
    assert out == [0, 1, 2, 3, 4]
    assert len(lines) == 2  # the first item and the last one (the interval is never reached)
    assert lines[0].startswith("day_job: 1/5 day [") and "ETA" in lines[0] and "day/s" in lines[0]
    assert lines[1].startswith("day_job: 5/5 day [")


def test_off_mode_is_silent_and_bar_mode_writes_a_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_PROGRESS", "off")
    lines: list[str] = []
    assert list(progress([1, 2], desc="x", log=lines.append)) == [1, 2] and lines == []
    monkeypatch.setenv("RECSYS_PROGRESS", "bar")
    assert list(progress([1, 2, 3], desc="bar test", unit="day")) == [1, 2, 3]
    err = capsys.readouterr().err
    assert "bar test" in err and "3/3" in err and "day/s" in err


def test_a_large_encode_goes_in_chunks_with_progress_and_gives_the_same_vectors(monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_PROGRESS", "lines")
    words = ["space", "war", "love", "comedy", "robot", "horse", "ship", "detective", "music", "ghost"]
    texts = [f"{words[i % 10]} {words[(i * 7) % 10]} story number {i % 97}" for i in range(PROGRESS_MIN_TEXTS * 2 + 5)]
    enc = TfidfEncoder(EncoderConfig(name="tfidf", tfidf_dim=8)).fit(texts)
    chunked = _encode_with_progress(enc, texts)
    assert chunked.shape == (len(texts), enc.dim)
    np.testing.assert_array_equal(chunked, enc.encode(texts))
    err = capsys.readouterr().err
    assert f"encoding {len(texts):,} texts with tfidf: 1/3 chunk" in err and "3/3 chunk" in err
