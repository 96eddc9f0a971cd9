"""The one exception the CLI turns into a single clear line (and exit code 2)."""


class QuantizeError(Exception):
    """A bad input or a failed step; the message says what was wrong and the fix."""


class GateFailed(QuantizeError):
    """The quantized model lost more quality than `--max-ppl-increase` allows."""
