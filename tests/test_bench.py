# SPDX-License-Identifier: Apache-2.0
"""The benchmark's CPU-side machinery: case generation, counting rules, the
check-before-timing runner, report writing (JSON, Markdown, PNG) with a fake
timer, and the command line's refusal of the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from vllm_xpu_hybrid.bench.families import FAMILIES, GROUPS, select
from vllm_xpu_hybrid.bench.registry import (
    BuildContext,
    Built,
    Case,
    Family,
    Work,
    outputs_differ,
    rate,
    roofline,
)
from vllm_xpu_hybrid.bench.report import CHART_NAME, JSON_NAME, MARKDOWN_NAME, write_all
from vllm_xpu_hybrid.bench.runner import run
from vllm_xpu_hybrid.bench.shapes import (
    MODELS,
    SHAPE_PRESETS,
    Attention,
    Mamba1,
    Mamba2,
    Model,
    ShapeSet,
    ShortConv,
)
from vllm_xpu_hybrid.bench.timing import (
    LONG_CALL_REPS,
    MAX_SPIN_US,
    Measurement,
    percentile,
    repetitions,
    spin_us,
    summarise,
)
from vllm_xpu_hybrid.cli import main


class FakeTimer:
    """Calls each implementation once and reports fixed times per name (a
    same-size copy takes 16 µs unless told otherwise)."""

    def __init__(self, device_us: dict[str, float]):
        self.device_us = {"copy": 16.0, **device_us}
        self.timed: list[str] = []

    def measure(self, impl, fn):
        fn()
        self.timed.append(impl)
        t = self.device_us[impl]
        return Measurement([0.9 * t, t, 1.2 * t, t, 1.1 * t], [7.0, 8.0, 9.0])


def _case_keys(cases):
    return [(c.family, c.label) for c in cases]


def test_models_preset_covers_every_family_model_and_size():
    shapes = SHAPE_PRESETS["models"]
    seen_models = set()
    for name, family in FAMILIES.items():
        cases = family.cases(shapes)
        assert cases, name
        keys = _case_keys(cases)
        assert len(keys) == len(set(keys)), f"{name}: duplicate case labels"
        for case in cases:
            assert case.family == name and case.work.amounts() and case.tolerance > 0
            seen_models.update(case.models)
            if "tokens" in case.params and name != "gated_rmsnorm":
                assert case.params["tokens"] in (4096, 16384)
            if "batch" in case.params:
                assert case.params["batch"] in (1, 64, 256)
    assert seen_models == set(MODELS)
    sizes = {(c.family, c.params.get("tokens"), c.params.get("batch"))
             for f in FAMILIES.values() for c in f.cases(shapes)}
    assert {("ssd", 4096, None), ("ssd", 16384, None)} <= sizes
    assert {("gdn_decode", None, b) for b in (1, 64, 256)} <= sizes


def test_models_sharing_a_shape_share_a_case():
    cases = FAMILIES["attention_decode"].cases(SHAPE_PRESETS["models"])
    llama_like = [c for c in cases if c.params["batch"] == 64 and c.params["q_heads"] == 32
                  and c.params["head_dim"] == 128]
    assert len(llama_like) == 1
    assert set(llama_like[0].models) == {"Granite-4.0-H-Small", "Nemotron-H-8B", "Llama-3-8B"}


def test_counting_rules():
    shapes = ShapeSet((MODELS["Llama-3-8B"], MODELS["Mamba2-2.7B"], MODELS["LFM2-1.2B"]),
                      prefill_tokens=(4096,), decode_batches=(64,))

    def only(family, **params):
        found = [c for c in FAMILIES[family].cases(shapes)
                 if all(c.params[k] == v for k, v in params.items())]
        assert len(found) == 1, found
        return found[0].work

    # K and V over 64 sequences x 4096 tokens x 8 heads x 128, bf16; Q and O;
    # the int32 block table (4096 / 16 blocks per sequence).
    assert only("attention_decode", head_dim=128).bytes == (
        64 * 4096 * 8 * 128 * 2 * 2 + 2 * 64 * 32 * 128 * 2 + 64 * 256 * 4)
    prefill = only("attention_prefill", head_dim=128)
    assert prefill.flops == 4 * 32 * 128 * 4096 * 4097 / 2
    assert prefill.bytes == 4096 * 128 * (32 + 32 + 8 + 8) * 2
    # SSD, Mamba2-2.7B: L=4096, Q=256, N=128, G=1, P=64, H=80.
    ssd = only("ssd")
    assert ssd.flops == (2 * 4096 * 256 * 128 * 1 + 2 * 4096 * 256 * 64 * 80
                         + 4 * 4096 * 64 * 128 * 80)
    # State update: 64 pages of 80 x 64 x 128 fp32, read and written, plus
    # x, z, out (80 x 64), dt (80), B and C (128) per row in bf16.
    assert only("mamba2_state_update", state_dtype="float32").bytes == (
        2 * 64 * 80 * 64 * 128 * 4 + (3 * 64 * 80 * 64 + 64 * 80 + 2 * 64 * 128) * 2)
    # LFM2's conv update: width 3, no bias term in the layer but the rule
    # counts the bias vector's read as dim elements.
    assert only("conv1d_update", dim=2048).bytes == (
        2 * 64 * 2048 * 2 + 2 * 64 * 2048 + 2048 * 3 + 2048) * 2
    # Mamba2-2.7B's conv: x, B and C channels.
    assert {c.params["dim"] for c in FAMILIES["conv1d_update"].cases(shapes)} == {5376, 2048}


def test_rates_and_roofline():
    work = Work(bytes=3e9, flops=400e12)
    assert rate(work.bytes, 1e6, "bytes") == pytest.approx(3.0)       # GB/s
    assert rate(work.flops, 1e6, "flops") == pytest.approx(400.0)     # TFLOP/s
    fraction, resource = roofline(work, 1e6, {"bytes": 3.0, "flops": 1000.0, "exps": None})
    assert (round(fraction, 6), resource) == (1.0, "bytes")
    fraction, resource = roofline(work, 1e6, {"bytes": 300.0, "flops": 800.0})
    assert (round(fraction, 6), resource) == (0.5, "flops")
    assert roofline(Work(exps=1e9), 1.0, {"bytes": 1.0, "exps": None}) is None


def test_percentiles():
    assert summarise([4.0, 1.0, 3.0, 2.0, 5.0]) == {"median": 3.0, "p20": 1.8, "p80": 4.2}
    assert percentile([7.0], 80) == 7.0


def test_repetitions_and_spin():
    assert repetitions(0.01, 50.0, 10, 100) == 100
    assert repetitions(1.0, 50.0, 10, 100) == 50
    assert repetitions(20.0, 50.0, 10, 100) == 10
    # One call longer than the target: a few repetitions, not min_reps.
    assert repetitions(4000.0, 50.0, 10, 100) == LONG_CALL_REPS
    assert spin_us([10.0, 30.0]) == 110.0
    assert spin_us([4e6]) == MAX_SPIN_US


def test_outputs_differ():
    want = torch.linspace(-2, 2, 101, dtype=torch.float64)
    assert outputs_differ(want.float() * (1 + 1e-3), want, 1e-2) is None
    shifted = want.clone()
    shifted[40] += 0.5
    assert "max |error|" in outputs_differ(shifted, want, 1e-2)
    assert "shape" in outputs_differ(want[:5], want, 1e-2)
    assert outputs_differ(torch.full_like(want, float("nan")), want, 1e-2) == "non-finite values"


def _toy_family(name: str, plugin_error: float, module: str = "vllm_xpu_hybrid.ops.reference"):
    """A family whose 'kernel' is x * 2 (+ plugin_error), with a correct peer,
    a wrong peer and a peer that cannot be imported."""

    def cases(shapes: ShapeSet) -> list[Case]:
        return [Case(name, f"n={n}", ("Toy",), {"n": n}, Work(bytes=8e3 * n), 1e-3)
                for n in shapes.decode_batches]

    def build(case: Case, ctx: BuildContext) -> Built:
        x = torch.arange(case.params["n"], dtype=torch.float32)
        built = Built(lambda: {"out": x.double() * 2})
        built.add("plugin", lambda: None, lambda: {"out": x * 2 + plugin_error})
        built.add("good peer", lambda: None, lambda: {"out": x * 2})
        built.add("wrong peer", lambda: None, lambda: {"out": x * 3})
        with built.peer("missing peer"):
            import vllm_xpu_hybrid_no_such_peer  # noqa: F401
        return built

    return Family(name, f"toy {name}", module, "bytes = 8 kB per element", cases, build)


def test_runner_checks_before_timing_and_writes_reports(tmp_path):
    families = [
        _toy_family("toy_ok", 0.0),
        _toy_family("toy_wrong", 1.0),
        _toy_family("toy_missing", 0.0, module="vllm_xpu_hybrid.ops.no_such_kernel"),
    ]
    shapes = ShapeSet((Model("Toy"),), decode_batches=(4, 8))
    timer = FakeTimer({"plugin": 10.0, "good peer": 25.0})
    saved = []
    report = run(families, shapes, BuildContext("cpu", "cpu"), timer,
                 {"device": "cpu", "device_name": "fake", "copy_gbps": 1.0, "shapes": "toy"},
                 {"bytes": 1.0, "flops": None, "exps": None}, save=saved.append,
                 log=lambda line: None)

    # Wrong outputs are never timed; a missing kernel skips its family.
    assert timer.timed == ["plugin", "good peer", "copy"] * 2
    by_family = {}
    for case in report["cases"]:
        by_family.setdefault(case["family"], []).append(case)
    assert "toy_missing" not in by_family
    assert report["families"]["toy_missing"]["status"] == "skipped"
    assert "no_such_kernel is not present" in report["families"]["toy_missing"]["reason"]
    for case in by_family["toy_wrong"]:
        assert case["status"] == "wrong" and case["results"] == []
        assert "plugin output differs from the reference" in case["reason"]
        assert "peers: good peer: within tolerance; wrong peer: out: max |error|" in case["reason"]
    ok = by_family["toy_ok"][0]
    assert ok["status"] == "timed"
    assert [r["impl"] for r in ok["results"]] == ["plugin", "good peer"]
    assert "output differs" in ok["peers_skipped"]["wrong peer"]
    assert "ModuleNotFoundError" in ok["peers_skipped"]["missing peer"]
    plugin, peer = ok["results"]
    assert (plugin["median_us"], plugin["p20_us"], plugin["host_us"]) == (10.0, 9.8, 8.0)
    assert peer["plugin_speedup"] == pytest.approx(2.5)
    assert plugin["plugin_speedup"] is None
    # 4 elements x 8 kB in 10 µs = 3.2 GB/s, over a 1 GB/s copy.
    assert plugin["rates"]["bytes"] == pytest.approx(3.2)
    assert plugin["roofline"] == {"fraction": pytest.approx(3.2), "resource": "bytes"}
    # The same 32 kB copied (16 kB read, 16 kB written) in 16 µs: 2 GB/s.
    assert ok["same_size_copy_gbps"] == pytest.approx(2.0)
    assert len(saved) == 2 + 2 + 1  # after every case, and after the skipped family

    paths = write_all(report, tmp_path)
    assert [p.name for p in paths] == [JSON_NAME, MARKDOWN_NAME, CHART_NAME]
    assert json.loads((tmp_path / JSON_NAME).read_text())["cases"] == report["cases"]
    text = (tmp_path / MARKDOWN_NAME).read_text()
    assert ("| toy_ok | n=4 | Toy | good peer | 25.0 | 24.5–28.0 | 8.0 | 1.3 GB/s | 128% (bytes) "
            "| 200% | 2.50× |") in text
    assert "family `toy_missing` (2 cases) skipped" in text
    assert "`toy_wrong` n=8: wrong: plugin output differs" in text
    assert "peer wrong peer not timed in 2 case(s), e.g. n=4: output differs" in text
    assert "- `toy_ok`: bytes = 8 kB per element" in text
    assert f"![speed-up]({CHART_NAME})" in text
    assert (tmp_path / CHART_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_budget_and_resume():
    family = _toy_family("toy_ok", 0.0)
    shapes = ShapeSet((Model("Toy"),), decode_batches=(4, 8))
    header = {"device": "cpu"}
    peaks = {"bytes": 1.0}
    first = run([family], shapes, BuildContext("cpu", "cpu"), FakeTimer({}), header, peaks,
                budget_s=-1.0, log=lambda line: None)
    assert [c["status"] for c in first["cases"]] == ["skipped", "skipped"]
    assert "time budget" in first["cases"][0]["reason"]

    timer = FakeTimer({"plugin": 10.0, "good peer": 20.0})
    second = run([family], shapes, BuildContext("cpu", "cpu"), timer, header, peaks,
                 log=lambda line: None)
    timer.timed.clear()
    third = run([family], shapes, BuildContext("cpu", "cpu"), timer, header, peaks,
                previous=second, log=lambda line: None)
    assert timer.timed == []
    assert third["cases"] == second["cases"] and third["resumed_from"]["cases"] == 2


def test_real_family_runs_on_cpu_with_fake_timer():
    """A real family end to end (builder, plugin kernel under the
    interpreter, float64 reference), at a tiny fp32 shape."""
    tiny = ShapeSet((Model("tiny", mamba2=Mamba2(2, 16, 16, 2, 16),
                           attention=Attention(2, 1, 64), short_conv=ShortConv(32, 3)),),
                    prefill_tokens=(), decode_batches=(3,), dtype="float32")
    family = FAMILIES["gated_rmsnorm"]
    report = run([family], tiny, BuildContext("cpu", "cpu"),
                 FakeTimer({"plugin": 5.0, "vLLM rms_norm_gated": 6.0}), {}, {"bytes": 1.0},
                 log=lambda line: None)
    (case,) = report["cases"]
    assert case["status"] == "timed", case["reason"]
    assert case["results"][0]["impl"] == "plugin"


def test_mamba1_scan_runs_beside_a_sequential_scan_on_cpu():
    """The Mamba-1 scan family with its PyTorch sequential-scan peer (the
    fallback when vLLM's compiled scan cannot run), at a tiny fp32 shape."""
    tiny = ShapeSet((Model("tiny", mamba1=Mamba1(inner=16, state=16)),),
                    prefill_tokens=(40,), decode_batches=(), dtype="float32")
    timer = FakeTimer({"plugin": 5.0, "PyTorch sequential scan": 500.0,
                       "vLLM selective_scan_fn": 50.0})
    report = run([FAMILIES["mamba1_scan"]], tiny, BuildContext("cpu", "cpu"), timer, {},
                 {"bytes": 1.0}, log=lambda line: None)
    (case,) = report["cases"]
    assert case["status"] == "timed", case["reason"]
    speedups = {row["impl"]: row["plugin_speedup"] for row in case["results"]}
    assert speedups["PyTorch sequential scan"] == pytest.approx(100.0)


def test_select_families_and_groups():
    assert [f.name for f in select(["ssd", "attention"])] == ["attention_decode",
                                                              "attention_prefill", "ssd"]
    assert len(select(None)) == len(FAMILIES)
    assert set(GROUPS["decode"]) <= set(FAMILIES)
    with pytest.raises(ValueError, match="not a family or group"):
        select(["bogus"])


def test_cli_refuses_cpu(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"--device cpu is refused: .* \(--device xpu\)"):
        main(["bench", "--device", "cpu", "--out", str(out)])
    if not torch.cuda.is_available() and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        with pytest.raises(SystemExit, match="no GPU is visible"):
            main(["bench", "--out", str(out)])
    assert not out.exists()


def test_cli_list_and_render(tmp_path, capsys):
    assert main(["bench", "--list", "--shapes", "quick", "--family", "ssd"]) == 0
    listed = capsys.readouterr().out
    assert "ssd" in listed and "L=4096 H=128 P=64 N=128 G=8 chunk=128  (Nemotron-H-8B)" in listed
    assert main(["bench", "--list", "--shapes", "quick", "--family", "ssd", "gdn_decode",
                 "--family", "lightning_decode"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "cases" in line]
    assert listed == ["ssd", "gdn_decode", "lightning_decode"]
    with pytest.raises(SystemExit, match="--family 'bogus' is not a family or group"):
        main(["bench", "--family", "bogus", "--list"])

    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"device_name": "fake", "families": {}, "cases": [],
                                 "counting_rules": {}}))
    assert main(["bench", "--from-json", str(saved), "--out", str(tmp_path / "r")]) == 0
    assert "no peer" not in (tmp_path / "r" / MARKDOWN_NAME).read_text()
    assert (tmp_path / "r" / CHART_NAME).exists()
