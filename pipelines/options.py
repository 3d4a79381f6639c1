"""Pipeline options: RiskWatch's own options and Beam's, with the local runner named explicitly."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from pipelines import element_coder

# Beam 2.77's plain DirectRunner first tries to download the Prism binary, which hangs where the
# network drops packets; the FnApiRunner is the in-process batch runner.
DEFAULT_BATCH_RUNNER = "FnApiRunner"


def beam_options(beam_args: list[str] | None, streaming: bool = False, **overrides) -> PipelineOptions:
    """PipelineOptions from pass-through command-line args, defaulting the runner; registers the
    elements' coder (``pipelines.element_coder``) for the pipeline about to be built, and keeps the
    local runner's workers from losing input (``whole_stage_inputs``)."""
    element_coder.register()
    whole_stage_inputs()
    options = PipelineOptions(list(beam_args or []), **overrides)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_BATCH_RUNNER
    if streaming:
        standard.streaming = True
    return options


def whole_stage_inputs() -> None:
    """Make the FnApiRunner send each stage's input to its gRPC workers (``--direct_running_mode=
    multi_processing`` or ``multi_threading``) in one piece when it has written it all.

    Beam 2.77's runner flushes what it has written so far every second from a timer thread
    (``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS``, ``data_plane.TimeBasedBufferingClosableOutputStream``):
    the flush takes the buffer, sends it and then clears it without a lock against the thread still
    writing, so input written while a flush sends is dropped, whole elements at a time, silently. Only
    a stage input written for more than a second is exposed — hundreds of MB on a loaded machine: how
    the county year on both cores lost Events (docs/notes/performance.md, session 12: "A defect found";
    the same loss reproduced on a small county with the runner's writing slowed). With no time limit
    the input goes when the runner closes the stream: all of it. The in-process runner (one worker, the
    default) and other runners do not use this data plane.
    """
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
