"""`tokenmill report breakeven` and `tokenmill report whatif`: options and output.

`add_arguments` and `add_whatif_arguments` fill a subparser; `server/cli.py` adds
the settings options (--home, --ledger-url, ...) beside them. `options` turns the
parsed options into the objects the reports are made of.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.breakeven import defaults
from server.breakeven.errors import BreakEvenError

if TYPE_CHECKING:
    from server.breakeven.document import Document

_EPILOG = """\
bills: OpenAI usage API JSON (/v1/organization/usage/completions, group_by=model)
or its dashboard CSV export; Anthropic usage report JSON
(/v1/organizations/usage_report/messages, group_by[]=model) or its Console CSV;
a generic CSV with columns month, model, input_tokens (cached included),
cached_input_tokens, output_tokens and optional cost_usd, requests,
successful_requests, batch; or the ledger: --bill ledger, a database URL, or a
ledger.sqlite3 path. Samples: server/breakeven/samples/.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `report breakeven`."""
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _bill_options(parser)
    _capacity_options(parser)
    _hosting_options(parser)
    success = parser.add_argument_group("success (for cost per successful request)")
    success.add_argument(
        "--success-rate-api", type=float, help="share of API answers that were good"
    )
    success.add_argument(
        "--success-rate-self",
        type=float,
        help="share of the self-hosted model's answers that were good (a ledger "
        "bill measures it from feedback)",
    )
    _output_options(parser)


def add_whatif_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `report whatif`: the bill, the levers, optionally hosting."""
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _bill_options(parser)
    levers = parser.add_argument_group("levers (in the order they are pulled)")
    levers.add_argument(
        "--cache-hit-rate",
        type=float,
        help="share of prompt tokens read from cache, e.g. 0.6",
    )
    levers.add_argument(
        "--batch-share",
        type=float,
        help="share of traffic moved to the batch API, e.g. 0.25",
    )
    levers.add_argument(
        "--shorter-prompts", type=float, help="share of input tokens cut, e.g. 0.2"
    )
    levers.add_argument(
        "--route-share", type=float, help="share of requests sent to --route-to"
    )
    levers.add_argument(
        "--route-to", help="the cheaper API model, e.g. openai/gpt-4o-mini"
    )
    levers.add_argument(
        "--quantize-capacity-factor",
        type=float,
        help="the quantized model's tokens/s over the original's (from a benchmark)",
    )
    levers.add_argument(
        "--quantize-precision", default="int8", help="label, e.g. int8 or int4"
    )
    levers.add_argument(
        "--quantized-from-compare",
        type=Path,
        metavar="FILE.json",
        help="instead of the factor: the throughput ratio of a `bench compare "
        "--result-json` result's variant",
    )
    levers.add_argument(
        "--quantized-from-history",
        nargs="?",
        const="",
        metavar="DB",
        help="instead: the latest `bench compare` against --capacity-model (else "
        "--candidate) in the bench history (default $TOKENMILL_HOME/bench.sqlite3)",
    )
    levers.add_argument(
        "--quantized-variant",
        metavar="NAME",
        help="the compared model to price (default: the fastest whose quality gate "
        "passed; naming one prices it even if its gate failed)",
    )
    _capacity_options(parser, required=False)
    _hosting_options(parser)
    _output_options(parser)


def cmd_report_breakeven(args: argparse.Namespace) -> int:
    from server.breakeven import options
    from server.breakeven.answer import answer
    from server.breakeven.report import breakeven_document, breakeven_json
    from server.breakeven.sensitivity import sensitivity

    settings = options.settings(args)
    bill = options.bill(args, settings)
    table = options.price_table(args, settings)
    pricer = options.pricer(args, settings, table, bill)
    capacity = options.capacity(args, settings)
    if capacity is None:
        raise BreakEvenError(
            "no capacity: give --capacity-tokens-per-s (per GPU, at your SLO), "
            "--prompt-tokens-per-s with --output-tokens-per-s, --capacity-file, or "
            "--capacity-from-history"
        )
    hardware, gpu_range = options.hardware(args, table)
    result = answer(
        bill,
        pricer.price_bill(bill),
        capacity,
        hardware,
        options.ops(args),
        options.fleet(args, bill),
        candidate=f"{options.candidate(args)} ({args.precision}) on {hardware.name}",
        success=options.success(args, bill),
    )
    table_of_sensitivity = sensitivity(result, gpu_range)
    if args.format == "json":
        return _write_json(args, breakeven_json(result, table_of_sensitivity))
    from server.breakeven.plot import cost_plot_png

    document = breakeven_document(result, table_of_sensitivity, cost_plot_png(result))
    return _write_document(args, document)


def cmd_report_whatif(args: argparse.Namespace) -> int:
    from server.breakeven import options
    from server.breakeven.whatif import Levers, what_if
    from server.breakeven.whatif_report import whatif_document, whatif_json

    settings = options.settings(args)
    bill = options.bill(args, settings)
    table = options.price_table(args, settings)
    pricer = options.pricer(args, settings, table, bill)
    levers = Levers(
        cache_hit_rate=args.cache_hit_rate,
        batch_share=args.batch_share,
        shorter_prompts=args.shorter_prompts,
        route_share=args.route_share,
        route_to=args.route_to,
        quantize_capacity_factor=args.quantize_capacity_factor,
        quantize_precision=args.quantize_precision,
        quantized=options.quantized(args, settings),
    )
    capacity = options.capacity(args, settings)
    hardware = options.hardware(args, table)[0] if capacity is not None else None
    result = what_if(
        bill,
        pricer,
        levers,
        capacity=capacity,
        hardware=hardware,
        ops=options.ops(args),
        fleet=options.fleet(args, bill),
    )
    if args.format == "json":
        return _write_json(args, whatif_json(result))
    title = f"What-if: the cost levers on {Path(bill.source).name}"
    return _write_document(args, whatif_document(result, title))


# Options


def _bill_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the bill")
    group.add_argument(
        "--bill", required=True, help="bill file, 'ledger', or a ledger URL"
    )
    group.add_argument("--bill-format", choices=defaults.BILL_FORMATS, default="auto")
    group.add_argument(
        "--months", type=float, help="months the bill covers (default: from its dates)"
    )
    group.add_argument("--since", help="ledger bills: from (7d, 2026-11-01, ...)")
    group.add_argument("--until", help="ledger bills: until (default now)")
    group.add_argument(
        "--model-map",
        action="append",
        default=[],
        metavar="MODEL=PROVIDER/MODEL",
        help="price a bill model as this prices.yaml entry (repeatable)",
    )
    group.add_argument(
        "--prices",
        type=Path,
        help="price file (default $TOKENMILL_HOME/prices.yaml over the shipped one)",
    )


def _capacity_options(
    parser: argparse.ArgumentParser, *, required: bool = True
) -> None:
    title = "capacity per GPU at your SLO" + (
        "" if required else " (for the self-hosted side)"
    )
    group = parser.add_argument_group(title)
    group.add_argument(
        "--candidate",
        help="the model to self-host (a label; default: --capacity-model)",
    )
    group.add_argument("--precision", default="bf16", help="its precision (a label)")
    group.add_argument(
        "--capacity-tokens-per-s", type=float, help="prompt + output tokens/s per GPU"
    )
    group.add_argument(
        "--prompt-tokens-per-s", type=float, help="prompt tokens/s per GPU"
    )
    group.add_argument(
        "--output-tokens-per-s", type=float, help="output tokens/s per GPU"
    )
    group.add_argument(
        "--capacity-file",
        type=Path,
        help="vllm bench serve --save-result JSON (or JSON Lines of a sweep), or a "
        "tokenmill calibration",
    )
    group.add_argument(
        "--capacity-from-history",
        nargs="?",
        const="",
        metavar="DB",
        help="the latest `bench run` of the model in the bench history (default "
        "$TOKENMILL_HOME/bench.sqlite3): its fastest point at the SLO",
    )
    group.add_argument(
        "--capacity-model",
        metavar="NAME",
        help="the model name `bench` stored (default: --candidate)",
    )
    group.add_argument(
        "--capacity-hardware",
        metavar="NAME",
        help="only runs on this hardware (bench run --hardware)",
    )
    group.add_argument(
        "--capacity-gpus", type=int, help="GPUs the measured engine used"
    )
    group.add_argument(
        "--slo-p99-ttft-ms", type=float, help="pick the fastest run meeting this"
    )
    group.add_argument(
        "--slo-p99-tpot-ms", type=float, help="pick the fastest run meeting this"
    )
    group.add_argument(
        "--cached-prompt-work",
        type=float,
        help="share of a prompt token's work a prefix-cache hit costs (default 0)",
    )


def _hosting_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware (rented by default)")
    group.add_argument(
        "--gpu", default="h100-sxm", help="GPU type, a key of prices.yaml's gpus"
    )
    group.add_argument(
        "--gpu-usd-per-hour",
        type=float,
        help="rental price (default: midpoint of prices.yaml's range)",
    )
    group.add_argument(
        "--owned", action="store_true", help="buy the GPUs instead of renting"
    )
    group.add_argument(
        "--purchase-usd", type=float, help="owned: price per GPU, server share included"
    )
    group.add_argument(
        "--lifetime-months", type=float, default=defaults.DEFAULT_LIFETIME_MONTHS
    )
    group.add_argument(
        "--power-w", type=float, help="owned: watts per GPU (default: its TDP)"
    )
    group.add_argument(
        "--usd-per-kwh", type=float, default=defaults.DEFAULT_USD_PER_KWH
    )
    group.add_argument("--pue", type=float, default=defaults.DEFAULT_PUE)
    group.add_argument(
        "--hosting-usd-per-gpu-month",
        type=float,
        default=defaults.DEFAULT_HOSTING_USD_PER_GPU_MONTH,
    )
    ops = parser.add_argument_group(
        "operations overhead (never zero unless you say so)"
    )
    ops.add_argument(
        "--ops-hours-per-month",
        type=float,
        help=f"engineer-hours/month (default {defaults.DEFAULT_OPS_HOURS_PER_MONTH:g})",
    )
    ops.add_argument(
        "--ops-usd-per-hour",
        type=float,
        help=f"loaded cost of an hour (default {defaults.DEFAULT_OPS_USD_PER_HOUR:g})",
    )
    ops.add_argument(
        "--ops-multiplier",
        type=float,
        help="instead: overhead as a share of hardware cost, e.g. 0.3",
    )
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument(
        "--peak-to-average",
        type=float,
        help="busiest hour's load over the mean (default: measured from hourly "
        f"buckets, else {defaults.DEFAULT_PEAK_TO_AVERAGE:g})",
    )
    fleet.add_argument(
        "--headroom",
        type=float,
        default=defaults.DEFAULT_HEADROOM,
        help="planned share of capacity in the busiest hour",
    )
    fleet.add_argument(
        "--gpus-per-replica",
        type=int,
        default=1,
        help="tensor-parallel GPUs per engine",
    )
    fleet.add_argument("--min-replicas", type=int, default=1)


def _output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format", choices=("markdown", "html", "json"), default="markdown"
    )
    group.add_argument(
        "--output",
        type=Path,
        help="write here instead of stdout (Markdown: the plot goes beside it as .png)",
    )


# Output


def _write_document(args: argparse.Namespace, document: Document) -> int:
    from server.breakeven.document import to_html, to_markdown

    if args.format == "html":
        return _write(args.output, to_html(document))
    image_paths = []
    if args.output is not None:
        for index, figure in enumerate(document.figures):
            suffix = f"-{index + 1}" if index else ""
            image = args.output.with_name(f"{args.output.stem}{suffix}.png")
            image.write_bytes(figure.png)
            image_paths.append(image.name)
    return _write(args.output, to_markdown(document, image_paths))


def _write_json(args: argparse.Namespace, data: dict[str, Any]) -> int:
    import orjson

    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    return _write(args.output, text)


def _write(path: Path | None, text: str) -> int:
    if path is None:
        sys.stdout.write(text)
        return 0
    try:
        path.write_text(text)
    except OSError as exc:
        raise BreakEvenError(f"cannot write {path} ({exc.strerror})") from None
    print(f"tokenmill: wrote {path}", file=sys.stderr)
    return 0
