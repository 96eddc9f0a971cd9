"""tokenmill's quantization toolchain.

`quantize.cli` runs in the serving environment (.venv): it resolves the model, checks
the inputs, runs the compression step in the toolchain's own environment
(.venv-quantize, llm-compressor) through `quantize.compress`, then measures the result
on vLLM (`quantize.gate`) and writes the report. The two sides share only plain JSON
(`quantize.plan`) and the method registry (`quantize.methods`).
"""
