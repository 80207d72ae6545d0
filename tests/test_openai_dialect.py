"""The OpenAI Realtime dialect alone: scripted session messages in, OpenAI events out."""

from __future__ import annotations

import json
from typing import Any

from rtasr.openai_realtime import OpenAIRealtimeDialect
from rtasr.protocol import Final, SpeechEnd, SpeechStart


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
    speech_stopped came at the pause, so turns still alternate, each with its own item."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    events = rendered(dialect,
                      SpeechStart(utterance=0, start=0.5),
                      SpeechEnd(utterance=0, end=2.0),
                      SpeechStart(utterance=1, start=3.0),
                      final(0, 0.5, 2.0, "Hello.", endpoint=True),
                      SpeechEnd(utterance=1, end=4.0),
                      final(1, 3.0, 4.0, "Goodbye.", endpoint=True))
    kinds = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert kinds == ["speech_started", "speech_stopped", "speech_started", "committed",
                     "delta", "completed", "speech_stopped", "committed", "delta", "completed"]
    assert events[1]["audio_end_ms"] == 2000 and events[6]["audio_end_ms"] == 4000
    assert [e["item_id"] for e in events[:2]] == [events[3]["item_id"]] * 2
    assert events[2]["item_id"] == events[7]["item_id"] != events[3]["item_id"]
