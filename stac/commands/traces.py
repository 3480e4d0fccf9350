"""`stac-sim traces import|stats|synth`: convert public traces, summarise, synthesise."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stac.traces import (
    FORMATS,
    MAHIMAHI_BIN_S,
    SYNTH_KINDS,
    SYNTH_MODELS,
    TraceError,
    import_trace,
    load_trace,
    save_trace,
    stats_table,
    synth_trace,
    trace_stats,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("traces", help="import, summarise and synthesise bandwidth traces")
    sub = p.add_subparsers(dest="traces_command", required=True, metavar="ACTION")

    imp = sub.add_parser("import", help="convert public trace files to the project CSV")
    imp.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    imp.add_argument("src", nargs="+", type=Path, help="input files, concatenated in time")
    imp.add_argument("-o", "--out", required=True, type=Path, help="output CSV")
    imp.add_argument("--bin-ms", type=float, default=MAHIMAHI_BIN_S * 1000,
                     help="Mahimahi bin width in ms (default %(default)g)")
    imp.set_defaults(func=_import)

    st = sub.add_parser("stats", help="duration, mean, std and percentiles of trace CSVs")
    st.add_argument("csv", nargs="+", type=Path)
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(func=_stats)

    sy = sub.add_parser("synth", help="write a seeded synthetic trace calibrated to STAC's data")
    sy.add_argument("--kind", required=True, choices=SYNTH_KINDS)
    sy.add_argument("--seconds", type=float, default=300.0)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("-o", "--out", required=True, type=Path)
    sy.set_defaults(func=_synth)


def _import(args: argparse.Namespace) -> int:
    try:
        trace = import_trace(args.src, args.fmt, bin_s=args.bin_ms / 1000.0)
    except TraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    srcs = ", ".join(p.name for p in args.src)
    note = ""
    if args.fmt == "mahimahi":
        note = f" (1500-byte opportunities binned to {args.bin_ms:g} ms)"
    comment = (
        f"imported by stac-sim traces import --format {args.fmt}{note}\n"
        f"source: {srcs}\n"
        "piecewise constant: bandwidth_kbps holds from time_s to the next row (or end_s)"
    )
    save_trace(trace, args.out, comment)
    print(stats_table([trace_stats(trace)]))
    print(f"wrote {args.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    rows = []
    for path in args.csv:
        try:
            rows.append(trace_stats(load_trace(path)))
        except TraceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(rows, indent=2) if args.json else stats_table(rows))
    return 0


def _synth(args: argparse.Namespace) -> int:
    try:
        trace = synth_trace(args.kind, args.seconds, args.seed)
    except (TraceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = SYNTH_MODELS[args.kind]
    comment = (
        f"SYNTHETIC {args.kind} trace (not measured): stac-sim traces synth --kind {args.kind} "
        f"--seconds {args.seconds:g} --seed {args.seed}\n"
        f"log-normal, two AR(1) components (tau {m.tau_fast_s:g} s w={m.fast_weight:g}, "
        f"tau {m.tau_slow_s:g} s), {m.step_s:g} s steps"
        + (f", Markov outages every ~{m.outage_every_s:g} s lasting ~{m.outage_mean_s:g} s"
           if m.outage_every_s > 0 else "")
        + f"; calibrated to {m.mean_kbps / 1000:g} +- {m.std_kbps / 1000:g} Mbps (STAC §VIII-A)\n"
        "piecewise constant: bandwidth_kbps holds from time_s to the next row (or end_s)"
    )
    save_trace(trace, args.out, comment)
    print(stats_table([trace_stats(trace)]))
    print(f"wrote {args.out}")
    return 0
