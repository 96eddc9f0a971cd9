"""Break-even: is self-hosting cheaper than the API at our volume, from when, and
what would each cost lever save?

| module | concept |
| --- | --- |
| `bills/` | reading bills: OpenAI, Anthropic, a generic CSV, the ledger |
| `usage` | the traffic a bill describes |
| `api_cost` | the API side: the bill at list prices |
| `capacity` | tokens per second one GPU serves at the SLO |
| `bench_history` | `tokenmill bench`'s run history, read-only |
| `hosting`, `defaults` | rented or owned GPUs, operations overhead, fleet sizing |
| `cost_curve` | both monthly costs against volume; the break-even volume |
| `answer` | the comparison at the bill's volume, with its assumptions |
| `sensitivity` | the answer over utilization, GPU price and overhead |
| `whatif` | the cost levers, alone and in order |
| `quantized` | the quantization lever's factor and quality, from `bench compare` |
| `report`, `whatif_report` | what each report says, as a document and JSON |
| `document`, `plot`, `formatting` | Markdown, self-contained HTML, the PNG plot |
| `cli`, `options` | `tokenmill report breakeven` / `whatif`: options to objects |
"""

from server.breakeven.cli import (
    add_arguments,
    add_whatif_arguments,
    cmd_report_breakeven,
    cmd_report_whatif,
)
from server.breakeven.errors import BillError, BreakEvenError

__all__ = [
    "BillError",
    "BreakEvenError",
    "add_arguments",
    "add_whatif_arguments",
    "cmd_report_breakeven",
    "cmd_report_whatif",
]
