"""Pipeline options: RiskWatch's own options and Beam's, with the local runner named explicitly."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import element_coder

# Beam 2.77's plain DirectRunner first tries to download the Prism binary, which hangs where the
# network drops packets; the FnApiRunner is the in-process batch runner.
DEFAULT_BATCH_RUNNER = "FnApiRunner"


def beam_options(beam_args: list[str] | None, streaming: bool = False, **overrides) -> PipelineOptions:
    """PipelineOptions from pass-through command-line args, defaulting the runner; registers the
    elements' coder (``pipelines.element_coder``) for the pipeline about to be built."""
    element_coder.register()
    options = PipelineOptions(list(beam_args or []), **overrides)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_BATCH_RUNNER
    if streaming:
        standard.streaming = True
    return options

