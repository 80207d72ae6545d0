"""File transcription over HTTP: uploads run through the same `Session` as a live stream
(`uploads.py`), with OpenAI's and Deepgram's request and answer shapes."""
