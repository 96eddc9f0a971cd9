"""Objects from the options of `report breakeven` and `report whatif`: the bill,
its pricer, capacity, hardware, overhead, fleet and success rates."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from server.breakeven import defaults, hosting
from server.breakeven.answer import SuccessRates
from server.breakeven.api_cost import ApiPricer
from server.breakeven.bills import ledger, read_bill
from server.breakeven.capacity import Capacity, from_file
from server.breakeven.errors import BreakEvenError
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


def capacity(args: argparse.Namespace) -> Capacity | None:
    """From one source: a blended rate, prompt and output rates, or a file."""
    given = [
        flag
        for flag, value in (
            ("--capacity-tokens-per-s", args.capacity_tokens_per_s),
            ("--prompt-tokens-per-s", args.prompt_tokens_per_s),
            ("--output-tokens-per-s", args.output_tokens_per_s),
            ("--capacity-file", args.capacity_file),
        )
        if value is not None
    ]
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
    if args.capacity_file is not None:
        capacity = from_file(
            args.capacity_file, gpus, args.slo_p99_ttft_ms, args.slo_p99_tpot_ms
        )
        if extra:
            capacity = dataclasses.replace(capacity, **extra)
        return capacity
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
