"""``riskwatch stream``: early warnings as files land in the inbox (the one-machine default).

Runs until SIGINT/SIGTERM (finishing the run in progress), or once with ``--once``. Each run
ingests the files that landed and decides warnings over the alert horizon with the same Beam
transforms as the streaming pipeline (docs/streaming.md).
"""
from __future__ import annotations

import logging
import signal
import sys
import threading

from pipelines import pii

NAME = "stream"
HELP = "watch an inbox and raise early warnings as department files land"
LOG = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--inbox", required=True, help="folder with hotline_12345/, police_110/, grid/ sub-folders")
    parser.add_argument("--gazetteer", required=True, help="region gazetteer CSV")
    parser.add_argument("--out", required=True, help="output root (warehouse/, quarantine/, state/stream/)")
    parser.add_argument("--key-file", help=f"file holding the HMAC key for caller phones (else ${pii.KEY_ENV})")
    parser.add_argument("--once", action="store_true", help="process the files that have landed, then exit")
    parser.add_argument("--allowed-lateness-days", type=float, default=3.0,
                        help="how late a record may arrive and still change its windows (default 3)")
    parser.add_argument("--cooldown-hours", type=float, default=24.0,
                        help="no repeat warning for a township × domain within this time unless its level rises")
    parser.add_argument("--webhook", help="group-robot webhook URL (WeCom/DingTalk markdown) for each warning")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="how often to look at the inbox (default 10)")
    parser.add_argument("--stable-seconds", type=float, default=5.0,
                        help="a file without a .done marker has landed once unmodified this long (default 5)")
    parser.add_argument("--history-days", type=int, default=90,
                        help="days of warehouse history behind the expected counts (default 90)")


def _report(alerts) -> int:
    for alert in alerts:
        print(f"{alert['level']}\t{alert.get('township_code') or '-'}\t{alert['domain']}\t"
              f"{alert['window_start']:%Y-%m-%d %H:%M}–{alert['window_end']:%Y-%m-%d %H:%M}\t"
              f"{'；'.join(alert['reasons'])}", flush=True)
    return len(alerts)


def run(args, beam_args) -> int:
    from pipelines.stream import EmbeddedConfig, EmbeddedStream
    from pipelines.warn import WarnPolicy
    from pipelines.windows import DAY, FiringPolicy

    try:
        key = pii.load_key(args.key_file)
    except pii.MissingKeyError as exc:
        print(f"riskwatch stream: {exc}", file=sys.stderr)
        return 2
    policy = WarnPolicy(FiringPolicy(streaming=False, allowed_lateness_s=int(args.allowed_lateness_days * DAY)),
                        cooldown_s=int(args.cooldown_hours * 3600))
    config = EmbeddedConfig(args.inbox, args.gazetteer, args.out, key, policy, history_days=args.history_days,
                            stable_seconds=args.stable_seconds, webhook_url=args.webhook, beam_args=beam_args)
    job = EmbeddedStream(config)
    stop = threading.Event()

    def request_stop(signum, _frame):
        LOG.info("%s: stopping after the run in progress", signal.Signals(signum).name)
        stop.set()
        # A second signal kills at once; the journal redoes the interrupted run on restart.
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    total = sum(_report(r.alerts) for r in job.recover())
    while not stop.is_set():
        total += _report(job.cycle().alerts)
        if args.once:
            break
        stop.wait(args.poll_seconds)
    print(f"warnings raised: {total}", flush=True)
    return 0
