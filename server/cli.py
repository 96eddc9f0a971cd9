"""The `tokenmill` command: serve models, list them, prepare the default one."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.error
import urllib.request

from rich.console import Console
from rich.table import Table

from server import default_model
from server.config import ConfigError, ModelsFile, load_models_file
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

    from server.engines import Engines
    from server.gateway import create_app
    from server.records import FanOut, JsonlRequestLog

    settings = _settings(args)
    _configure_logging(settings.log_level)
    models = _load(settings)
    prepare_sources(models.models, settings.home, console)
    config_dir = settings.config.resolve().parent
    checkpoints = {
        m.name: resolve_source(m, settings.home, config_dir)
        for m in models.models
        if not m.is_remote
    }
    engines = Engines(models, checkpoints, settings.logs_dir)
    request_log = JsonlRequestLog(settings.logs_dir / "requests.jsonl")
    app = create_app(engines, FanOut(request_log))
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
            timeout_graceful_shutdown=5,
        )
    finally:
        request_log.close()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenmill",
        description="Self-hosted LLM inference that knows what every token costs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ConfigError, default_model.ModelPreparationError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
