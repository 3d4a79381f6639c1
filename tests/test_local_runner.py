"""Beam's local runner on several cores (``--direct_running_mode=multi_processing``) hands every
stage its whole input (``pipelines.options.whole_stage_inputs``): Beam 2.77's timed flush of the
runner's data channel dropped what the runner wrote while it sent (the county year's lost Events)."""
import threading
import time

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.worker import data_plane
from apache_beam.testing.util import assert_that, equal_to

from pipelines.options import beam_options

BOTH_CORES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def test_what_the_runner_writes_while_its_channel_sends_reaches_the_worker():
    beam_options(BOTH_CORES)
    # the runner's channel to a gRPC worker, made as worker_handlers.GrpcServer makes it
    channel = data_plane.BeamFnDataServicer(worker_handlers.DATA_BUFFER_TIME_LIMIT_MS).get_conn_by_worker_id("w")
    sent, flushing, written = [], threading.Event(), threading.Event()

    def enqueue(element):
        if isinstance(threading.current_thread(), data_plane.PeriodicThread):
            flushing.set()  # a timed flush has taken what was written so far
            written.wait(5)  # and is sending it while the runner writes on
        sent.append(element)

    channel._enqueue_to_send = enqueue
    stream = channel.output_stream("bundle", "input")
    stream.write(b"first ")
    # a timed flush, if the channel makes them, starts within its period
    flushing.wait(worker_handlers.DATA_BUFFER_TIME_LIMIT_MS / 1000 + 1)
    stream.write(b"second")
    written.set()
    stream.close()
    assert b"".join(element.data for element in sent) == b"first second"


def test_a_loaded_runner_on_both_cores_loses_no_element(monkeypatch):
    send = fn_runner.BundleManager._send_input_to_worker
    enqueue = data_plane._GrpcDataChannel._enqueue_to_send

    def slowly(self, bundle_id, transform_id, byte_streams):
        # a loaded machine: the runner writes a stage's input of several parts over seconds
        parts = list(byte_streams or ())
        send(self, bundle_id, transform_id, (time.sleep(0.3) or part for part in parts) if len(parts) > 1 else parts)

    def behind(self, element):
        # a worker behind: a timed flush waits for room in the send queue
        if isinstance(threading.current_thread(), data_plane.PeriodicThread):
            time.sleep(0.5)
        enqueue(self, element)

    monkeypatch.setattr(fn_runner.BundleManager, "_send_input_to_worker", slowly)
    monkeypatch.setattr(data_plane._GrpcDataChannel, "_enqueue_to_send", behind)
    with beam.Pipeline(options=beam_options(BOTH_CORES)) as p:
        # a Flatten of stages: its reader's input comes in many parts
        parts = [p | f"Create{k}" >> beam.Create(range(100 * k, 100 * k + 100), reshuffle=False) for k in range(12)]
        assert_that(parts | beam.Flatten() | beam.combiners.Count.Globally(), equal_to([1200]))
