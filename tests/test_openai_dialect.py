"""The OpenAI Realtime dialect alone: scripted session messages in, OpenAI events out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtasr.core.protocol import Final, SpeechEnd, SpeechStart
from rtasr.dialects.openai_realtime import OpenAIRealtimeDialect
from rtasr.errors import ParameterError


def rendered(dialect: OpenAIRealtimeDialect, *messages: Any) -> list[dict[str, Any]]:
    return [json.loads(text) for m in messages for text in dialect.render(m)]


def final(utterance: int, start: float, end: float, text: str, endpoint: bool) -> Final:
    return Final(utterance=utterance, start=start, end=end, text=text, endpoint=endpoint)


def test_a_cut_in_running_speech_ends_no_turn() -> None:
    """Pipecat turns `speech_started`/`speech_stopped` into the user's turn: a cut (the
    speaker did not pause) commits and completes an item, but stops no speech and starts
    none, so the agent does not answer mid-sentence."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect,
                      SpeechStart(utterance=0, start=0.5),
                      SpeechStart(utterance=1, start=4.2, continues=True),
                      final(0, 0.5, 4.2, "Your call is important to us.", endpoint=False),
                      final(1, 4.2, 6.0, "Please stay on the line.", endpoint=True))
    kinds = [e["type"].removeprefix("input_audio_buffer.")
             .removeprefix("conversation.item.input_audio_transcription.") for e in events]
    assert kinds == ["speech_started", "committed", "delta", "completed",
                     "speech_stopped", "committed", "delta", "completed"]
    assert events[0]["audio_start_ms"] == 500 and events[4]["audio_end_ms"] == 6000
    completed = [e for e in events if e["type"].endswith(".completed")]
    assert [e["transcript"] for e in completed] == ["Your call is important to us.",
                                                     "Please stay on the line."]
    assert events[5]["previous_item_id"] == events[1]["item_id"]


def test_a_paused_speaker_ends_the_turn() -> None:
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect,
                      SpeechStart(utterance=0, start=0.5),
                      final(0, 0.5, 2.0, "Hello.", endpoint=True),
                      SpeechStart(utterance=1, start=3.0),
                      final(1, 3.0, 4.0, "Goodbye.", endpoint=True))
    turns = [e["type"] for e in events if "speech_" in e["type"]]
    assert turns == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"] * 2


def test_the_turn_stops_at_the_pause_not_at_the_final() -> None:
    """The next turn can begin before the last one's final is decoded (under load): its
    speech_stopped and committed came at the pause, as OpenAI sends them, so turns still
    alternate and a client waiting for each committed item's completed waits for it."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect,
                      SpeechStart(utterance=0, start=0.5),
                      SpeechEnd(utterance=0, end=2.0),
                      SpeechStart(utterance=1, start=3.0),
                      final(0, 0.5, 2.0, "Hello.", endpoint=True),
                      SpeechEnd(utterance=1, end=4.0),
                      final(1, 3.0, 4.0, "Goodbye.", endpoint=True))
    kinds = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert kinds == ["speech_started", "speech_stopped", "committed", "speech_started",
                     "delta", "completed", "speech_stopped", "committed", "delta", "completed"]
    assert events[1]["audio_end_ms"] == 2000 and events[6]["audio_end_ms"] == 4000
    first, second = events[0]["item_id"], events[3]["item_id"]
    assert first != second
    assert [e["item_id"] for e in events[:3]] + [events[5]["item_id"]] == [first] * 4
    assert [e["item_id"] for e in events[6:]] == [second] * 4
    assert events[7]["previous_item_id"] == first


def test_a_cut_commits_the_piece_at_once() -> None:
    """The audio before a cut is committed when the cut is made, so items are committed in
    the order they were spoken even when the last piece's pause comes before the cut
    piece's final."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect,
                      SpeechStart(utterance=0, start=0.5),
                      SpeechStart(utterance=1, start=4.2, continues=True),
                      SpeechEnd(utterance=1, end=5.0),
                      final(0, 0.5, 4.2, "Your call is important to us.", endpoint=False),
                      final(1, 4.2, 5.0, "Hold on.", endpoint=True))
    kinds = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert kinds == ["speech_started", "committed", "speech_stopped", "committed",
                     "delta", "completed", "delta", "completed"]
    assert events[3]["previous_item_id"] == events[1]["item_id"]
    assert [e["transcript"] for e in events if "transcript" in e] == [
        "Your call is important to us.", "Hold on."]


def test_a_committed_turn_that_gets_no_final_is_completed_empty() -> None:
    """A cough: speech started and stopped, committed, but no words, so no final; once the
    session awaits no final, the item is completed with an empty transcript."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect, SpeechStart(utterance=0, start=0.5),
                      SpeechEnd(utterance=0, end=0.9))
    events += [json.loads(t) for t in dialect.settled(None)]
    kinds = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert kinds == ["speech_started", "speech_stopped", "committed", "completed"]
    assert events[3]["transcript"] == "" and events[3]["item_id"] == events[2]["item_id"]


def test_clear_spares_what_was_committed() -> None:
    """`input_audio_buffer.clear` drops the open turn; a turn already committed (at its
    pause, or a piece at its cut) keeps its words when its final comes after the clear."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect, SpeechStart(utterance=0, start=0.5),
                      SpeechEnd(utterance=0, end=2.0),  # committed at the pause
                      SpeechStart(utterance=1, start=3.0),
                      SpeechStart(utterance=2, start=5.0, continues=True))  # 1 committed
    dialect.control(json.dumps({"type": "input_audio_buffer.clear"}))  # drops utterance 2
    events += rendered(dialect, final(0, 0.5, 2.0, "Hello there friend.", endpoint=True),
                       final(1, 3.0, 5.0, "Call me back.", endpoint=False),
                       final(2, 5.0, 6.0, "Never mind.", endpoint=False))
    events += [json.loads(t) for t in dialect.settled(None)]
    done = [e["transcript"] for e in events if e["type"].endswith(".completed")]
    assert done == ["Hello there friend.", "Call me back."]


def test_diarize_is_refused_with_where_to_ask_for_speakers() -> None:
    """OpenAI's realtime API has no speaker field: a session asking for speakers is told
    where they are, not silently given none."""
    with pytest.raises(ParameterError, match=r"no speaker field.*/ws\?diarize=true"):
        OpenAIRealtimeDialect("intent=transcription&diarize=true", default_language="en")
    OpenAIRealtimeDialect("intent=transcription&diarize=false", default_language="en")
