"""The one effective config: every "auto" value resolved once, for the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtasr.config import ENGINE_FIELDS, Config
from rtasr.engine import Engine
from rtasr.errors import ConfigError
from rtasr.server import Server

AUTO_FIELDS = ("device", "compute_type", "beam_size", "context_chars", "workers", "cpu_threads",
               "max_batch_size", "batch_window_ms", "encoder_window_s", "max_sessions")


def effective(config: Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in AUTO_FIELDS}


def test_auto_values_on_cpu() -> None:
    assert effective(Config().resolved(gpus=0, cpus=4)) == {
        "device": "cpu", "compute_type": "int8", "beam_size": 1, "context_chars": 0,
        "workers": 2, "cpu_threads": 4, "max_batch_size": 4, "batch_window_ms": 0,
        "encoder_window_s": 10.0, "max_sessions": 32}
    assert Config().resolved(gpus=0, cpus=64).cpu_threads == 8


def test_auto_values_on_cuda() -> None:
    # measured on an H100 (docs/benchmarks.md, "GPU"): beam 5 and batches cost throughput
    # for no WER gain, CTranslate2's CPU threads sat idle, 64 sessions missed the latency target
    assert effective(Config().resolved(gpus=1, cpus=4)) == {
        "device": "cuda", "compute_type": "float16", "beam_size": 1, "context_chars": 0,
        "workers": 2, "cpu_threads": 1, "max_batch_size": 1, "batch_window_ms": 0,
        "encoder_window_s": 0.0, "max_sessions": 32}
    assert Config(device="cpu").resolved(gpus=1, cpus=4).device == "cpu"


def test_explicit_values_are_kept_and_resolving_twice_changes_nothing() -> None:
    explicit = Config(device="cpu", compute_type="float32", beam_size=3, context_chars=0,
                      workers=1, cpu_threads=2, max_batch_size=1, batch_window_ms=0,
                      encoder_window_s=0.0, spare_encoder_window_s=0.0, spare_beam_size=3,
                      max_sessions=5, commit_cut_s=5.0, pause_cut_s=3.0)
    assert explicit.resolved(gpus=1, cpus=16) == explicit
    once = Config().resolved(gpus=0, cpus=4)
    assert once.resolved(gpus=0, cpus=4) == once


def test_finals_on_spare_capacity_get_a_beam_of_5() -> None:
    def spare(**kw: object) -> int:
        return Config(**kw).resolved(gpus=0, cpus=2).spare_beam_size  # type: ignore[arg-type]

    assert spare() == 5  # the bundled tiny.en
    assert spare(model="base") == spare(model="/models/whisper-small") == 5
    assert spare(model="base", spare_beam_size=1) == 1
    assert spare(model="base", beam_size=8) == 8


def test_run_on_speech_is_cut_later_for_a_multilingual_model() -> None:
    """Base mishears the first words after a cut more than tiny.en: past 6 s, not 4
    (docs/benchmarks.md, "Streaming options"). The transport's config follows the engine's model."""
    def cuts(config: Config) -> tuple[float, float]:
        return config.commit_cut_s, config.pause_cut_s

    assert cuts(Config().resolved(gpus=0, cpus=2)) == (4.0, 4.0)  # the bundled tiny.en
    assert cuts(Config(model="base").resolved(gpus=0, cpus=2)) == (6.0, 6.0)
    assert cuts(Config(model="base", commit_cut_s=3, pause_cut_s=0).resolved(
        gpus=0, cpus=2)) == (3.0, 0.0)
    assert cuts(Config(model="base", max_utterance_s=5).resolved(gpus=0, cpus=2)) == (5.0, 5.0)
    engine = Config(model="/models/whisper-small").resolved(gpus=1, cpus=16)
    assert cuts(Config().served_with(engine)) == (6.0, 6.0)
    with pytest.raises(ConfigError, match="--commit-cut-s"):
        Config(commit_cut_s=0)


def test_a_local_model_is_english_only_by_its_vocabulary_not_its_name(tmp_path: Path) -> None:
    """A CTranslate2 Whisper directory says what it is: English-only models have 51,864 tokens,
    multilingual ones 51,865 or more (CTranslate2's own test). Its name may say nothing."""
    for name, tokens, english in (("mine", 51864, True), ("tiny.en-but-not", 51865, False),
                                  ("v3", 51866, False)):
        model = tmp_path / name
        model.mkdir()
        (model / "vocabulary.txt").write_text("".join(f"t{i}\n" for i in range(tokens)))
        config = Config(model=str(model))
        assert config.english_only is english, name
        assert config.resolved(gpus=0, cpus=2).commit_cut_s == (4.0 if english else 6.0)
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "vocabulary.json").write_text(json.dumps([f"t{i}" for i in range(51864)]))
    assert Config(model=str(tmp_path / "json")).english_only
    assert Config(model="small.en").english_only and not Config(model="small").english_only


def test_cuda_without_a_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        Config(device="cuda").resolved(gpus=0, cpus=4)


def test_the_engine_runs_on_the_effective_config(engine: Engine) -> None:
    config = engine.config
    assert config == config.resolved(gpus=0 if config.device == "cpu" else 1, cpus=1)
    assert config.device in ("cpu", "cuda") and config.compute_type != "auto"
    assert engine.scheduler.workers == config.workers
    assert engine.scheduler.max_batch_size == config.max_batch_size
    assert engine.beam_size == config.beam_size


def test_a_transport_takes_the_engines_resolved_fields_and_keeps_its_own() -> None:
    """served_with: what the engine resolved where the model runs (a Ray deployment, maybe
    on a GPU machine) is what the sessions read, whatever the transport's own machine."""
    engine = Config(beam_size=5, context_chars=200).resolved(gpus=1, cpus=16)
    served = Config(port=0, api_keys=("k",), pause_ms=100).served_with(engine)
    assert {name: getattr(served, name) for name in ENGINE_FIELDS} == {
        name: getattr(engine, name) for name in ENGINE_FIELDS}
    assert (served.port, served.api_keys, served.pause_ms) == (0, ("k",), 100)
    assert served.max_sessions == engine.max_sessions
    assert served.resolved(gpus=1, cpus=1) == served  # nothing left on "auto"
    assert Config(max_sessions=3).served_with(engine).max_sessions == 3


async def test_the_server_and_its_gateway_read_one_resolved_config(engine: Engine) -> None:
    server = Server(Config(host="127.0.0.1", port=0, max_sessions=3), engine)
    config = server.config
    assert config == config.served_with(engine.config)
    assert (config.beam_size, config.context_chars) == (engine.config.beam_size,
                                                        engine.config.context_chars)
    assert (config.port, config.max_sessions) == (0, 3)
    assert server.gateway.config is config
