"""The sans-I/O core: audio in, protocol events and decode requests out.

No sockets, threads, event loop or model here: `session.Session` is one connection's policy
(segmentation, partials, finals, cuts, context) over plain numpy audio, testable without a
server. What it asks of the engine is `engine_api.DecodeRequest`; what it asks of its transport is
`actions` (messages to send, decode jobs, cancellations).
"""
