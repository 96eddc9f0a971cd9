"""Defaults of the break-even model, and where they come from.

None could be checked against a live source in this session:
- Rented $/GPU-hour: the midpoint of prices.yaml's on-demand range for the GPU;
  the low end is marketplace and spot-like capacity, the high end hyperscaler
  on-demand, and the sensitivity table shows both ends.
- Owned: 36-month life (a common depreciation period for servers), $0.15/kWh
  (around US commercial electricity rates), PUE 1.5 (near the industry average
  in Uptime Institute's surveys), $100 per GPU-month for colocation space,
  network and remote hands - a placeholder to replace with a real quote.
- GPU power: board TDP from NVIDIA's data sheets as remembered here (H100/H200
  SXM 700 W, A100 80GB SXM 400 W, L40S 350 W); a busy inference GPU runs near it.
- Operations: 40 engineer-hours a month at $100/h (a $200k loaded salary over
  2,000 h). Upgrades of vLLM, drivers and models, monitoring, on-call and
  capacity planning take about a quarter of an engineer for even one
  deployment, and teams that price self-hosting underestimate it several-fold -
  so it is never zero unless set so by hand, and the sensitivity table shows 2x
  and 4x of it.
- Peak-to-average 2 when the bill cannot measure it (no hourly buckets): the
  daily cycle of business traffic; headroom 80%: room for bursts in the hour.

Kept apart from the model's classes so that building the CLI parser, which
shows these defaults, imports nothing heavy.
"""

from __future__ import annotations

BILL_FORMATS = ("auto", "openai", "anthropic", "csv", "ledger")
GPU_POWER_W = {"h100-sxm": 700.0, "h200": 700.0, "a100-80gb": 400.0, "l40s": 350.0}
DEFAULT_LIFETIME_MONTHS = 36.0
DEFAULT_USD_PER_KWH = 0.15
DEFAULT_PUE = 1.5
DEFAULT_HOSTING_USD_PER_GPU_MONTH = 100.0
DEFAULT_OPS_HOURS_PER_MONTH = 40.0
DEFAULT_OPS_USD_PER_HOUR = 100.0
DEFAULT_PEAK_TO_AVERAGE = 2.0
DEFAULT_HEADROOM = 0.8
