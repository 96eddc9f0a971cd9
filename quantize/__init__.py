"""tokenmill's quantization toolchain (runs in its own environment)."""
