"""Objects from the options of `report breakeven` and `report whatif`: the bill,
its pricer, capacity, the measured quantization, hardware, overhead, fleet and
success rates."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from server.breakeven import bench_history, defaults, hosting
from server.breakeven.answer import SuccessRates
from server.breakeven.api_cost import ApiPricer
from server.breakeven.bills import ledger, read_bill
from server.breakeven.capacity import Capacity, from_file, from_history
from server.breakeven.errors import BreakEvenError
from server.breakeven.quantized import (
    QuantizedVariant,
    from_compare_file,
    from_compare_run,
)
from server.breakeven.usage import Bill
from server.price_table import GpuPrice, PriceTable
from server.settings import Settings


def settings(args: argparse.Namespace) -> Settings:
    """`TOKENMILL_*` settings, then the settings options on the command line."""
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    return Settings.from_env(**overrides)


def bill(args: argparse.Namespace, settings: Settings) -> Bill:
    """The bill named by --bill, for the --since/--until window of a ledger."""
    start_s = end_s = None
    if args.since or args.until:
        from server.metering_routes import parse_time
        from server.usage_report import ReportError

        try:
            start_s, end_s = parse_time(args.since), parse_time(args.until)
        except ReportError as exc:
            raise BreakEvenError(str(exc)) from None
    return read_bill(
        args.bill,
        args.bill_format,
        months=args.months,
        default_ledger_url=settings.ledger,
        start_s=start_s,
        end_s=end_s,
    )


def price_table(args: argparse.Namespace, settings: Settings) -> PriceTable:
    """--prices, else the shipped table under $TOKENMILL_HOME/prices.yaml."""
    if args.prices is not None:
        return PriceTable.load(args.prices)
    return PriceTable.for_home(settings.home)


def pricer(
    args: argparse.Namespace, settings: Settings, table: PriceTable, bill: Bill
) -> ApiPricer:
    """Prices for the bill's models: --model-map, models.yaml for a ledger."""
    model_map: dict[str, str] = {}
    for item in args.model_map:
        name, _, key = item.partition("=")
        if not name or not key:
            raise BreakEvenError(
                f"--model-map {item!r}: write BILL_MODEL=PROVIDER/MODEL, e.g. "
                "gpt-4o-mini-2024-07-18=openai/gpt-4o-mini"
            )
        model_map[name.strip()] = key.strip()
    if bill.format == ledger.FORMAT:
        model_map = {**_api_references(settings), **model_map}
    provider = bill.format.split("-", 1)[0]
    return ApiPricer(
        table, model_map, provider if provider in ("openai", "anthropic") else None
    )


def _api_references(settings: Settings) -> dict[str, str]:
    """Each served model's api_reference from models.yaml, where it has one."""
    from server.config import load_models_file

    if not settings.config.exists():
        return {}
    return {
        name: model.api_reference
        for model in load_models_file(settings.config).models
        if model.api_reference
        for name in model.served_names
    }


def candidate(args: argparse.Namespace) -> str:
    """The self-hosted model's name: --candidate, else --capacity-model."""
    return args.candidate or args.capacity_model or "self-hosted model"


def capacity(args: argparse.Namespace, settings: Settings) -> Capacity | None:
    """From one source: a blended rate, prompt and output rates, a file, or the
    bench history."""
    given = [
        flag
        for flag, value in (
            ("--capacity-tokens-per-s", args.capacity_tokens_per_s),
            ("--prompt-tokens-per-s", args.prompt_tokens_per_s),
            ("--output-tokens-per-s", args.output_tokens_per_s),
            ("--capacity-file", args.capacity_file),
            ("--capacity-from-history", args.capacity_from_history),
        )
        if value is not None
    ]
    if args.capacity_hardware is not None and args.capacity_from_history is None:
        raise BreakEvenError(
            f"--capacity-hardware {args.capacity_hardware!r} chooses a run of the "
            "bench history; add --capacity-from-history"
        )
    separate = {"--prompt-tokens-per-s", "--output-tokens-per-s"}
    if not given:
        return None
    if len(given) > 1 and set(given) != separate:
        raise BreakEvenError(
            f"capacity given twice ({', '.join(given)}); keep one source"
        )
    extra: dict[str, Any] = {}
    if args.cached_prompt_work is not None:
        extra["cached_prompt_work"] = args.cached_prompt_work
    gpus = args.capacity_gpus
    if gpus is not None and gpus < 1:
        raise BreakEvenError(f"--capacity-gpus {gpus} must be 1 or more")
    if args.capacity_file is not None or args.capacity_from_history is not None:
        capacity = _measured_capacity(args, settings, gpus)
        return dataclasses.replace(capacity, **extra) if extra else capacity
    per = f" over {gpus} GPUs" if gpus else ""
    gpus = gpus or 1
    if args.capacity_tokens_per_s is not None:
        return Capacity.blended(
            args.capacity_tokens_per_s / gpus,
            f"given (--capacity-tokens-per-s){per}",
            **extra,
        )
    if set(given) != separate:
        raise BreakEvenError(
            "--prompt-tokens-per-s and --output-tokens-per-s go together"
        )
    return Capacity(
        args.prompt_tokens_per_s / gpus,
        args.output_tokens_per_s / gpus,
        f"given (--prompt-tokens-per-s, --output-tokens-per-s){per}",
        **extra,
    )


def _measured_capacity(
    args: argparse.Namespace, settings: Settings, gpus: int | None
) -> Capacity:
    slos = (args.slo_p99_ttft_ms, args.slo_p99_tpot_ms)
    if args.capacity_file is not None:
        return from_file(args.capacity_file, gpus, *slos)
    run = bench_history.latest_run(
        _history_path(args.capacity_from_history, settings),
        "run",
        _measured_model(args, "--capacity-from-history"),
        args.capacity_hardware,
    )
    return from_history(run, gpus, *slos)


def quantized(args: argparse.Namespace, settings: Settings) -> QuantizedVariant | None:
    """The variant a `bench compare` measured: from its result file, or the
    latest compare against the model in the bench history."""
    file, history = args.quantized_from_compare, args.quantized_from_history
    if file is not None and history is not None:
        raise BreakEvenError(
            "--quantized-from-compare and --quantized-from-history both given; "
            "keep one source of the quantization factor"
        )
    if file is not None:
        return from_compare_file(
            file, args.quantized_variant, args.capacity_model or args.candidate
        )
    if history is not None:
        run = bench_history.latest_run(
            _history_path(history, settings),
            "compare",
            _measured_model(args, "--quantized-from-history"),
        )
        return from_compare_run(run, args.quantized_variant)
    if args.quantized_variant is not None:
        raise BreakEvenError(
            f"--quantized-variant {args.quantized_variant!r} chooses a variant of a "
            "`bench compare`; add --quantized-from-compare FILE.json or "
            "--quantized-from-history"
        )
    return None


def _history_path(value: str, settings: Settings) -> Path:
    # The option without a value ("") means the history in the home directory.
    return Path(value) if value else bench_history.default_path(settings.home)


def _measured_model(args: argparse.Namespace, flag: str) -> str:
    model: str | None = args.capacity_model or args.candidate
    if model is None:
        raise BreakEvenError(
            f"{flag} needs the model the benchmark measured: give --capacity-model "
            "NAME (the served name `tokenmill bench` used) or --candidate NAME"
        )
    return model


def hardware(
    args: argparse.Namespace, table: PriceTable
) -> tuple[hosting.Hardware, GpuPrice | None]:
    """Rented (default) or --owned GPUs, and prices.yaml's range for the GPU."""
    gpu_range = table.gpus.get(args.gpu)
    if args.owned and args.gpu_usd_per_hour is not None:
        raise BreakEvenError(
            "--gpu-usd-per-hour is a rental price; owned GPUs take --purchase-usd"
        )
    if not args.owned:
        for flag in ("purchase_usd", "power_w"):
            if getattr(args, flag) is not None:
                raise BreakEvenError(
                    f"--{flag.replace('_', '-')} is for --owned GPUs; add --owned"
                )
        if args.gpu_usd_per_hour is not None:
            return hosting.RentedGpu(
                args.gpu, args.gpu_usd_per_hour, "given (--gpu-usd-per-hour)"
            ), gpu_range
        return hosting.RentedGpu.from_range(args.gpu, table.gpu(args.gpu)), gpu_range
    if args.purchase_usd is None:
        raise BreakEvenError(
            "--owned needs --purchase-usd: what one GPU costs, its share of the "
            "server included (e.g. an 8-GPU server at $280,000 is 35000)"
        )
    power_w = args.power_w or defaults.GPU_POWER_W.get(args.gpu)
    if power_w is None:
        raise BreakEvenError(
            f"no power figure for GPU {args.gpu!r}; give --power-w (watts per GPU)"
        )
    owned: hosting.Hardware = hosting.OwnedGpu(
        name=args.gpu,
        purchase_usd=args.purchase_usd,
        power_w=power_w,
        lifetime_months=args.lifetime_months,
        usd_per_kwh=args.usd_per_kwh,
        pue=args.pue,
        hosting_usd_per_gpu_month=args.hosting_usd_per_gpu_month,
    )
    return owned, None


def ops(args: argparse.Namespace) -> hosting.OpsOverhead:
    """Engineer-hours at a rate (default), or a share of the hardware cost."""
    by_hours = args.ops_hours_per_month is not None or args.ops_usd_per_hour is not None
    if args.ops_multiplier is not None:
        if by_hours:
            raise BreakEvenError(
                "give operations overhead as hours (--ops-hours-per-month, "
                "--ops-usd-per-hour) or as --ops-multiplier, not both"
            )
        return hosting.OpsOverhead(multiplier=args.ops_multiplier)
    return hosting.OpsOverhead(
        hours_per_month=_or(
            args.ops_hours_per_month, defaults.DEFAULT_OPS_HOURS_PER_MONTH
        ),
        usd_per_hour=_or(args.ops_usd_per_hour, defaults.DEFAULT_OPS_USD_PER_HOUR),
    )


def fleet(args: argparse.Namespace, bill: Bill) -> hosting.FleetPolicy:
    """Peak-to-average given, measured from hourly buckets, or assumed."""
    if args.peak_to_average is not None:
        peak, source = args.peak_to_average, "given (--peak-to-average)"
    elif bill.measured_peak_to_average is not None:
        peak = bill.measured_peak_to_average
        source = "measured: the bill's busiest hour over its mean hour"
    else:
        peak = defaults.DEFAULT_PEAK_TO_AVERAGE
        source = (
            "assumed: the daily cycle of business traffic; the bill has no hourly "
            "buckets to measure it (fetch hourly usage, or pass --peak-to-average)"
        )
    return hosting.FleetPolicy(
        peak_to_average=peak,
        peak_source=source,
        headroom=args.headroom,
        gpus_per_replica=args.gpus_per_replica,
        min_replicas=args.min_replicas,
    )


def success(args: argparse.Namespace, bill: Bill) -> SuccessRates:
    """Given, measured (ledger feedback; a bill's successful_requests), or
    assumed equal on both sides, and said so."""
    measured = bill.success_rate
    unknown = "unknown: give --success-rate-api / --success-rate-self"
    api, api_source = args.success_rate_api, "given (--success-rate-api)"
    own, own_source = args.success_rate_self, "given (--success-rate-self)"
    if bill.format == ledger.FORMAT:
        if own is None and measured is not None:
            own, own_source = measured, "measured in the ledger (see notes)"
    elif api is None and measured is not None:
        api, api_source = measured, "the bill's successful_requests"
    if api is None and own is not None:
        api, api_source = own, "assumed equal to the self-hosted model's"
    elif own is None and api is not None:
        own, own_source = api, "assumed equal to the API's: evaluate the candidate"
    if api is None:
        api_source = own_source = unknown
    return SuccessRates(api, own, api_source, own_source)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
