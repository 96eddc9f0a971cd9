"""The `tokenmill` command: serve models, list them, prepare the default one."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request

from rich.console import Console
from rich.table import Table

from server import default_model
from server.breakeven import (
    add_arguments as add_breakeven_arguments,
)
from server.breakeven import (
    add_whatif_arguments,
    cmd_report_breakeven,
    cmd_report_whatif,
)
from server.config import ConfigError, ModelsFile, load_models_file
from server.keys import KeyStoreError
from server.ledger_schema import LedgerError
from server.settings import Settings
from server.sources import prepare_sources, resolve_source

logger = logging.getLogger(__name__)
console = Console(stderr=True)


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=name,
            default=None,
            help=f"{field.description} (env TOKENMILL_{name.upper()})",
        )


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    return Settings.from_env(**overrides)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(settings: Settings) -> ModelsFile:
    return load_models_file(settings.config)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.auth import Authenticator, is_loopback
    from server.engines import Engines
    from server.gateway import create_app
    from server.keys import KeyStore
    from server.ledger import Ledger
    from server.metering import Meter
    from server.metrics import GatewayMetrics
    from server.price_table import PriceTable
    from server.records import JsonlRequestLog
    from server.sampler import Sampler
    from server.telemetry import open_source

    settings = _settings(args)
    _configure_logging(settings.log_level)
    models = _load(settings)
    keys = KeyStore.open(settings.ledger)
    if all(key.is_revoked for key in keys.list()):
        if not is_loopback(settings.host):
            raise ConfigError(
                f"refusing to listen on {settings.host} without API keys: anyone "
                "who can reach it could use the models. Create a key with "
                "`tokenmill keys create NAME --admin`, or listen on 127.0.0.1"
            )
        console.print(
            "tokenmill: no API keys exist, so the gateway is open to anyone on "
            "this machine (loopback only); `tokenmill keys create NAME` closes it"
        )
    prepare_sources(models.models, settings.home, console)
    config_dir = settings.config.resolve().parent
    checkpoints = {
        m.name: resolve_source(m, settings.home, config_dir)
        for m in models.models
        if not m.is_remote
    }
    engines = Engines(models, checkpoints, settings.logs_dir)
    request_log = None
    if settings.metering:
        meter = Meter(
            models,
            settings.home,
            PriceTable.for_home(settings.home),
            GatewayMetrics(),
            Ledger.open(settings.ledger),
        )
        sampler = Sampler(open_source(), interval_s=5.0)
        app = create_app(
            engines, meter, auth=Authenticator(keys), meter=meter, sampler=sampler
        )
    else:
        request_log = JsonlRequestLog(settings.logs_dir / "requests.jsonl")
        console.print(
            "tokenmill: metering is off; requests are only logged to "
            f"{request_log.path}"
        )
        app = create_app(engines, request_log, auth=Authenticator(keys))
    console.print(
        f"tokenmill: serving {', '.join(m.name for m in models.models)} on "
        f"http://{settings.host}:{settings.port}/v1 (engines start in the "
        f"background; GET /ready says when; logs in {settings.logs_dir})"
    )
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            # Nothing sits in front to forward client addresses; and every
            # per-response header costs time at thousands of requests a second.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        if request_log is not None:
            request_log.close()
        keys.close()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    settings = _settings(args)
    models = _load(settings)
    states = _running_states(settings)
    table = Table(title=f"models in {settings.config}")
    for column in ("name", "aliases", "precision", "source", "state"):
        table.add_column(column)
    for model in models.models:
        source = model.source or (model.endpoint.url if model.endpoint else "")
        if model.name in states:
            state = states[model.name]
        elif model.is_remote:
            state = "remote (gateway not running)"
        else:
            state = _checkpoint_state(model.source or "", settings)
        table.add_row(
            model.name, ", ".join(model.aliases), model.precision, source, state
        )
    Console().print(table)
    return 0


def _running_states(settings: Settings) -> dict[str, str]:
    url = f"http://{settings.host}:{settings.port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (urllib.error.URLError, OSError):
        return {}
    try:
        return dict(json.loads(body).get("models", {}))
    except (ValueError, AttributeError):
        return {}


def _checkpoint_state(source: str, settings: Settings) -> str:
    if source == "builtin:" + default_model.DEFAULT_MODEL_NAME:
        path = default_model.checkpoint_dir(settings.home)
        ready = default_model.verify_checkpoint(path)
        return "prepared, not serving" if ready else "not prepared yet"
    return "not serving"


def cmd_prepare(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = default_model.prepare_default_model(settings.home, console, force=args.force)
    print(path)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from server.keys import KeyStore

    settings = _settings(args)
    keys = KeyStore.open(settings.ledger)
    try:
        if args.action == "create":
            key = keys.create(args.name, admin=args.admin)
            console.print(
                f"created {'admin ' if args.admin else ''}key {args.name!r}; it is "
                "shown only this once (tokenmill keeps only its hash):"
            )
            print(key)
        elif args.action == "revoke":
            keys.revoke(args.name)
            console.print(f"revoked key {args.name!r}")
        else:
            table = Table(title="API keys")
            for column in ("name", "admin", "created", "revoked"):
                table.add_column(column)
            for info in keys.list():
                table.add_row(
                    info.name,
                    "yes" if info.is_admin else "",
                    _when(info.created_at),
                    _when(info.revoked_at) if info.revoked_at else "",
                )
            Console().print(table)
    finally:
        keys.close()
    return 0


def cmd_report_usage(args: argparse.Namespace) -> int:
    from server.report_usage import print_usage_report

    settings = _settings(args)
    models = _load(settings)
    return print_usage_report(
        settings, models, args.by, args.since, args.until, args.format
    )


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenmill",
        description="Self-hosted LLM inference that knows what every token costs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # Listed for --help; main() hands them to their own module before parsing.
    commands.add_parser("bench", help="benchmarks (see `tokenmill bench --help`)")
    commands.add_parser("quantize", help="quantize a model behind a quality gate")

    serve = commands.add_parser("serve", help="serve models.yaml's models")
    _add_settings_options(serve)
    serve.set_defaults(run=cmd_serve)

    models = commands.add_parser("models", help="list configured models and state")
    _add_settings_options(models)
    models.set_defaults(run=cmd_models)

    prepare = commands.add_parser(
        "prepare", help="prepare the embedded default model (SmolLM2-135M-Instruct)"
    )
    _add_settings_options(prepare)
    prepare.add_argument("--force", action="store_true", help="prepare it again")
    prepare.set_defaults(run=cmd_prepare)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    for action, text in (
        ("create", "make a key and print it once"),
        ("list", "list keys (never the keys themselves)"),
        ("revoke", "make a key stop working"),
    ):
        sub = key_actions.add_parser(action, help=text)
        _add_settings_options(sub)
        if action != "list":
            sub.add_argument("name", help="the key's name, e.g. team-a")
        if action == "create":
            sub.add_argument("--admin", action="store_true", help="may see all usage")
        sub.set_defaults(run=cmd_keys)

    report = commands.add_parser("report", help="reports from the ledger")
    reports = report.add_subparsers(dest="report", required=True)
    usage = reports.add_parser("usage", help="usage and cost, grouped")
    _add_settings_options(usage)
    usage.add_argument("--by", default="model", help="model,key,tag,user,status,day")
    usage.add_argument("--since", default="7d", help="7d, 12h, 2026-12-01, …")
    usage.add_argument("--until", default=None, help="same forms; default now")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table")
    usage.set_defaults(run=cmd_report_usage)

    breakeven = reports.add_parser(
        "breakeven", help="self-hosting against an API bill: break-even, payback"
    )
    _add_settings_options(breakeven)
    add_breakeven_arguments(breakeven)
    breakeven.set_defaults(run=cmd_report_breakeven)
    whatif = reports.add_parser("whatif", help="what each cost lever would save")
    _add_settings_options(whatif)
    add_whatif_arguments(whatif)
    whatif.set_defaults(run=cmd_report_whatif)
    return parser


# Subcommands whose code lives outside server/ (which never imports it): they run
# as their own module with the rest of the command line.
_DELEGATED = {"bench": "bench", "quantize": "quantize"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _DELEGATED:
        command = [sys.executable, "-m", _DELEGATED[argv[0]], *argv[1:]]
        os.execv(sys.executable, command)
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (
        ConfigError,
        default_model.ModelPreparationError,
        KeyStoreError,
        LedgerError,
    ) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
