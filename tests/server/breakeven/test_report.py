"""Sensitivity, and the report as Markdown, self-contained HTML and JSON."""

from __future__ import annotations

import base64
import re

import orjson
import pytest

from server.breakeven.answer import Answer
from server.breakeven.document import Document, Paragraph, Table, to_html, to_markdown
from server.breakeven.plot import cost_plot_png
from server.breakeven.report import breakeven_document, breakeven_json, headline
from server.breakeven.sensitivity import sensitivity
from server.price_table import PriceTable
from tests.server.breakeven.test_answer import rented_answer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def result(prices: PriceTable) -> Answer:
    return rented_answer(prices)


def test_sensitivity_cells(result: Answer, prices: PriceTable) -> None:
    table = sensitivity(result, prices.gpu("testgpu"))

    # Rented at $2/h, with prices.yaml's range of $1-3 around it.
    assert table.price_labels == ["$1.00/GPU-h", "$2.00/GPU-h", "$3.00/GPU-h"]
    # Overhead x2 ($8,000) at 40% utilization: 0.6 busy / 0.4 = 1.5, so 2 GPUs;
    # at $3/h: 2 x $2,190 + $8,000 = $12,380, so $16,268 - $12,380 = $3,888.
    row = next(r for r in table.rows if r.overhead_factor == 2 and r.utilization == 0.4)
    assert row.num_gpus == 2
    assert row.savings_usd[2] == pytest.approx(3_888)
    # 60% and 80% both need 1 GPU (0.6 / 0.6 = 1): one row covers both.
    merged = next(r for r in table.rows if r.overhead_factor == 2 and r.num_gpus == 1)
    assert (merged.utilization, merged.utilization_high) == (0.6, 0.8)


def test_headline(result: Answer) -> None:
    text = headline(result)
    assert "At 4.94B tokens a month ($16,268/month on the API)" in text
    assert "2 GPUs (rented testgpu) costs $6,920/month" in text
    assert "self-hosting is cheaper by $9,348/month" in text
    assert "cheaper from 1.66B tokens a month on" in text


def test_markdown_html_and_json(result: Answer, prices: PriceTable) -> None:
    table = sensitivity(result, prices.gpu("testgpu"))
    png = cost_plot_png(result)
    document = breakeven_document(result, table, png)

    markdown = to_markdown(document, ["report.png"])
    assert "![Monthly cost against monthly volume" in markdown
    assert "| operations overhead | 40 engineer-hours/month x $100/h" in markdown
    assert "| peak-to-average | 2.50 |" in markdown

    page = to_html(document)
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert data is not None
    assert base64.b64decode(data.group(1)) == png
    assert png.startswith(PNG_MAGIC)
    assert "<script" not in page

    data_json = orjson.loads(orjson.dumps(breakeven_json(result, table)))
    assert data_json["self_hosted"]["num_gpus_peak"] == 2
    assert data_json["break_even_monthly_tokens"] == pytest.approx(
        5_460 * 4_942e6 / 16_268
    )
    what = {a["what"] for a in data_json["assumptions"]}
    assert {"capacity", "operations overhead", "peak-to-average", "headroom"} <= what


def test_markdown_without_a_saved_plot_points_to_html(result: Answer) -> None:
    document = breakeven_document(result, sensitivity(result), b"png")
    assert "in the HTML report" in to_markdown(document)


def test_html_escapes_what_users_typed() -> None:
    document = Document("<b>t</b>")
    document.add(Paragraph("<script>x</script>"), Table(["a|b"], [["<i>"]]))
    page = to_html(document)
    assert "<script>x" not in page
    assert "&lt;script&gt;" in page
    assert "a\\|b" in to_markdown(document)
