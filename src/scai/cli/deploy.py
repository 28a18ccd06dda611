"""``scai export`` / ``scai serve`` / ``scai edge``: run one trained model from edge to centre."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from scai.cli._common import (
    CliError,
    add_threads_argument,
    apply_threads,
    existing_file,
    http_url,
    listen_host,
    mac_budget,
    non_negative_float,
    onnx_opset,
    port,
    positive_float,
    positive_int,
    probability,
)

__all__ = ["register"]

EXPORT_HELP = """\
Export a model directory as one ONNX graph per stage (stage_k.onnx: features of stage k-1 ->
features_k, logits_k; stage 0 takes the preprocessed spectrum (batch, 1, W)) plus manifest.json
(stage shapes, per-exit MACs, calibrated thresholds and temperatures, classes, spectral axis,
preprocessing pipeline, SHA-256 of the weights and of every graph). Thresholds are calibrated
on the model's validation split for --budget (mean MACs per spectrum), or given by --threshold.
"""

SERVE_HELP = """\
Serve a model directory over HTTP (FastAPI + uvicorn): POST /v1/predict (raw spectra, JSON or
.npy), POST /v1/continue?stage=k (edge features, .npy float32/float16), GET /v1/health,
GET /v1/model, /docs. With --token-file every request but health needs
'Authorization: Bearer <token>' (health then answers only {"status": "ok"} without it); a token
in the URL is refused. Requests name their model in the X-Scai-Model header (continue must);
another model gets 409. Requests arriving within a few ms are batched together. Bodies are
parsed off the event loop; connections slow to send their headers are closed (--header-timeout).
Put a TLS-terminating reverse proxy in front for anything beyond this machine (docs/deploy.md).
"""

EDGE_HELP = """\
Classify spectra as an edge device would: run the ONNX stages locally while the cumulative
cost fits --bmax and no exit is confident; spectra still unsure are offloaded to --server
(raw spectrum or fp16 stage features, whichever is smaller). If the server is unreachable or
slower than --timeout, the best local exit answers and the row says offload_failed.
Writes OUT as CSV: index, prediction, class_index, exit (0-based), decided_at (edge/centre),
offload (none/raw/features), offload_failed, confidence, macs_edge, macs_centre, bytes_sent,
latency_ms, error, the preprocessing costs, the reliability flags (unknown_score, unknown,
out_of_domain, domain_reason, prediction_set with --sets) and held: why the spectrum was kept
from leaving early as confident (unknown: flagged unknown there, --on-unknown deeper, the
default; ambiguous: its conformal set held more than one class, --on-ambiguous deeper), after
which it ran deeper or, when --bmax stopped it, was offloaded. MODEL is an export directory
(manifest.json) or a model directory (exported to a temporary folder first, which needs torch).
"""


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model as per-stage ONNX graphs + manifest", description=EXPORT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory from `scai train`")
    p.add_argument("--out", required=True, help="export directory to write")
    p.add_argument("--budget", type=mac_budget, default=None, help="mean MACs per spectrum to calibrate exit thresholds for (e.g. 300k, or 25%% of the full path)")
    p.add_argument("--threshold", type=probability, default=None, help="fixed confidence threshold in [0, 1] for every exit instead")
    p.add_argument("--opset", type=onnx_opset, default=None, help="ONNX opset, 9 or newer (default 17)")
    add_threads_argument(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("serve", help="serve a model over HTTP (computing centre)", description=SERVE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory from `scai train`")
    p.add_argument("--host", type=listen_host, default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="port in 0..65535 (default 8000; 0: any free port)")
    p.add_argument("--token-file", type=existing_file, default=None, help="file holding the bearer token clients must send")
    p.add_argument("--max-body-mb", type=positive_float, default=8.0, help="largest request body in MiB, > 0 (default 8)")
    p.add_argument("--batch-wait-ms", type=non_negative_float, default=3.0, help="micro-batching window in ms, >= 0 (default 3)")
    p.add_argument("--max-batch", type=positive_int, default=256, help="most spectra per micro-batch, >= 1 (default 256)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="PyTorch threads, >= 1 (default: all cores; waiting threads sleep, OMP_WAIT_POLICY=PASSIVE)")
    p.add_argument("--max-connections", type=positive_int, default=1024,
                   help="open connections and running requests allowed at once; beyond, 503 (default 1024)")
    p.add_argument("--header-timeout", type=positive_float, default=10.0,
                   help="seconds a connection may take to send a request's headers before it is closed, > 0 (default 10)")
    p.add_argument("--no-docs", action="store_true",
                   help="do not serve /docs and /redoc (those pages load JavaScript from public CDNs into the browser)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("edge", help="classify on the edge under a MAC budget, offloading to a server", description=EDGE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL_DIR_OR_EXPORT", help="export directory (manifest.json) or model directory")
    p.add_argument("data", metavar="DATA", help="spectra: file, folder, or bundled dataset name")
    p.add_argument("--bmax", type=mac_budget, required=True, help="edge budget per spectrum in MACs (e.g. 300k, 1.2M) or a share of the full path (50%%)")
    p.add_argument("--server", type=http_url, default=None, help="computing centre URL, e.g. http://127.0.0.1:8000 (default: never offload)")
    p.add_argument("--token-file", type=existing_file, default=None, help="file holding the server's bearer token")
    p.add_argument("--threshold", type=probability, default=None, help="confidence threshold in [0, 1] (default: calibrated, from the manifest)")
    p.add_argument("--timeout", type=positive_float, default=2.0, help="seconds to wait for the server before answering locally, > 0 (default 2)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="spectra processed together, >= 1 (default 1, as a device measuring one at a time)")
    p.add_argument("--label-column", "-l", default=None, help="label column name or index, if DATA has one (prints accuracy)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="ONNX Runtime threads, >= 1 (default 1, as a small device has; also PyTorch's when MODEL must be exported first)")
    p.add_argument("--sets", type=probability, default=None, metavar="LEVEL",
                   help="also write the conformal prediction set at this calibrated level (e.g. 0.95)")
    p.add_argument("--on-unknown", choices=["deeper", "answer"], default=None,
                   help="a spectrum flagged unknown where it is confident: run deeper, offloading it when --bmax stops "
                        "it (default), or answer there flagged")
    p.add_argument("--on-ambiguous", choices=["answer", "deeper"], default=None,
                   help="with --sets: a spectrum whose set has more than one class where it is confident: answer there "
                        "(default), or run deeper / offload")
    p.add_argument("--out", required=True,
                   help="file to write; its extension chooses the format (.csv, .tsv, .json, .parquet); - = CSV on standard output")
    p.set_defaults(func=_edge)


def _export(args: argparse.Namespace) -> int:
    from scai.deploy.onnx_export import DEFAULT_OPSET, export_onnx

    if args.budget is not None and args.threshold is not None:
        raise CliError("give --budget or --threshold, not both")
    apply_threads(args.threads)
    out = export_onnx(args.model_dir, args.out, budget=args.budget, thresholds=args.threshold,
                      opset=DEFAULT_OPSET if args.opset is None else args.opset)
    from scai.deploy.manifest import load_manifest

    m = load_manifest(out)
    print(f"exported {m['n_exits']} stages to {out} (opset {m['opset']}); exit MACs "
          + ", ".join(f"{v:,}" for v in m["exit_macs"]) + f"; thresholds from {m['threshold_source']}")
    return 0


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    from scai.deploy.server import read_token_file

    try:
        return read_token_file(path)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once (as uvicorn will) so a port in use is one line, not a server log."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise CliError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); pick another port") from None


def _serve(args: argparse.Namespace) -> int:
    from scai.deploy.server import ServerConfig, serve

    token = _token(args.token_file)
    if args.max_body_mb * (1 << 20) < 1024:
        raise CliError(f"--max-body-mb {args.max_body_mb:g} is below 1 KiB, which no request fits; use at least 0.001")
    _check_can_listen(args.host, args.port)
    cfg = ServerConfig(max_body_bytes=int(args.max_body_mb * (1 << 20)), batch_wait_ms=args.batch_wait_ms,
                       max_batch_rows=args.max_batch, threads=args.threads, max_connections=args.max_connections,
                       header_timeout_s=args.header_timeout, docs=not args.no_docs)
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"scai serve: warning: listening on {args.host} without --token-file; anyone who can reach it may use it",
              file=sys.stderr)
    serve(args.model_dir, host=args.host, port=args.port, token=token, config=cfg)
    return 0


def _write_edge_results(results: list[Any], out: str) -> None:
    """``--out``: CSV through the edge's own writer; other formats (and ``-``) through the table writer."""
    from dataclasses import astuple, fields

    from scai.cli._output import FORMATS, table_output
    from scai.deploy.edge import EdgeResult, write_results_csv

    if out != "-" and FORMATS.get(Path(out).suffix.lower()) == "csv":
        write_results_csv(results, out)
        return
    def kind(annotation: Any) -> str:  # "float | None" is a float column (empty cell for None)
        base = str(annotation).replace(" | None", "").strip()
        return {"int": "int", "float": "float", "bool": "bool"}.get(base, "str")

    columns = [(f.name, kind(f.type)) for f in fields(EdgeResult)]

    def cells(r: Any) -> list[Any]:  # a conformal set is written as write_results_csv does: joined with |
        row = list(astuple(r))
        names = [f.name for f in fields(EdgeResult)]
        if "prediction_set" in names:
            i = names.index("prediction_set")
            row[i] = "" if r.prediction_set is None else "|".join(r.prediction_set)
        return row

    with table_output(out, columns) as write:
        write([cells(r) for r in results])


def _edge(args: argparse.Namespace) -> int:
    from scai.cli._common import load_spectra
    from scai.cli._output import output_format
    from scai.deploy.edge import EdgeClient
    from scai.deploy.manifest import MANIFEST

    output_format(args.out)  # an extension with no format is refused before any work
    if args.on_ambiguous == "deeper" and args.sets is None:
        raise CliError("--on-ambiguous deeper holds spectra whose conformal set has more than one class; "
                       "give the sets' level, e.g. --sets 0.95")

    src = Path(args.model)
    tmp = None
    if (src / MANIFEST).is_file():
        export_dir = src
    elif (src / "config.json").is_file():
        from scai.deploy.onnx_export import export_onnx

        apply_threads(args.threads)
        tmp = tempfile.TemporaryDirectory(prefix="scai-export-")
        export_dir = export_onnx(src, tmp.name)
        print(f"exported {src} to a temporary folder (use `scai export` once to skip this)", file=sys.stderr)
    else:
        raise CliError(f"{src}: neither an export directory (manifest.json) nor a model directory (config.json)")
    try:
        client = EdgeClient(export_dir, bmax=args.bmax, server=args.server, token=_token(args.token_file),
                            threshold=args.threshold, timeout_s=args.timeout, threads=args.threads,
                            on_unknown=args.on_unknown, on_ambiguous=args.on_ambiguous, sets=args.sets)
        spectra = load_spectra(args.data, args.label_column)
        results = []
        for start in range(0, len(spectra.X), args.batch_size):
            batch = client.classify(spectra.X[start : start + args.batch_size], spectra.axis)
            for r in batch:
                r.index += start
            results.extend(batch)
        _write_edge_results(results, args.out)
    finally:
        if tmp is not None:
            tmp.cleanup()
    n = len(results)
    where = {k: sum(r.decided_at == k for r in results) for k in ("edge", "centre")}
    failed = sum(r.offload_failed for r in results)
    line = (f"{n} spectra: {where['edge']} decided on the edge, {where['centre']} by the centre, "
            f"{failed} offload(s) failed; mean MACs edge {np.mean([r.macs_edge for r in results]):,.0f}, "
            f"centre {np.mean([r.macs_centre for r in results]):,.0f}; bytes sent {sum(r.bytes_sent for r in results):,}"
            + (f"; preprocessing on the edge {np.mean([r.preprocessing_ms for r in results]):.3f} ms/spectrum, "
               f"{results[0].preprocessing_macs:,} MACs counted" if results else ""))
    if spectra.y is not None and len(spectra.class_names):
        truth = np.asarray(spectra.class_names)[spectra.y]
        acc = float(np.mean([r.prediction == str(t) for r, t in zip(results, truth)]))
        line += f"; accuracy {acc:.4f}"
    print(line, file=sys.stderr if args.out == "-" else sys.stdout)
    print(f"wrote {'standard output' if args.out == '-' else args.out}", file=sys.stderr if args.out == "-" else sys.stdout)
    return 0
