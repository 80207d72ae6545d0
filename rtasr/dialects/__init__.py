"""Other wire protocols over the same core `Session`: Deepgram's live API and OpenAI's realtime
transcription API. Each only translates messages to and from the native protocol's events;
still no I/O."""
