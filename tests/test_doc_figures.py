"""The figures the docs quote are the records they were taken from (docs/figures/*.json, written by
`tools/benchmark.py ... --record`), and a record says what it was measured on."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from utils.bench.figures import (FIGURES_DIR, cpu_facts, machine_text, quoted_records, render,
                                 stale_docs)

TOOL = [sys.executable, str(REPO / "tools" / "benchmark.py")]


def strict_load(path: Path):
    def refuse(name):
        raise ValueError(f"{path}: non-finite {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_docs_quote_exactly_the_records():
    assert sorted(FIGURES_DIR.glob("*.json")), "no records in docs/figures"
    assert stale_docs() == []


def test_every_doc_figure_block_names_records_that_exist():
    quoted = [n for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")]
              for n in quoted_records(p.read_text())]
    assert {"surround_cpu", "model_cpu", "make_demo_cpu", "make_test_cpu"} <= set(quoted)
    for name in quoted:
        record = strict_load(FIGURES_DIR / f"{name}.json")
        assert record["command"].startswith("python tools/benchmark.py ")
        assert record["machine"]["cpu"] and record["machine"]["cores"] >= 1


def test_a_changed_figure_is_caught(tmp_path):
    folder = tmp_path / "figures"
    shutil.copytree(FIGURES_DIR, folder)
    record = strict_load(folder / "surround_cpu.json")
    record["result"]["ratio"] += 0.5
    (folder / "surround_cpu.json").write_text(json.dumps(record))
    problems = stale_docs(folder=folder)
    assert any("figures differ" in p for p in problems), problems


def test_benchmark_writes_a_record_the_docs_can_render(tmp_path):
    path = tmp_path / "fig" / "tiny.json"
    subprocess.run(TOOL + ["surround", "--height", "32", "--width", "48", "--batch", "2", "--iters", "1",
                           "--warmup", "0", "--threads", "1", "--record", str(path)], check=True,
                   capture_output=True, cwd=REPO)
    record = strict_load(path)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    assert record["kind"] == "surround" and "--height 32" in record["command"]
    assert record["machine"]["cpu"] == cpu and len(record["load_avg_1min"]) == 2
    assert record["result"]["cameras"] == 2 and record["result"]["height"] == 32
    text = render("surround", ["tiny"], path.parent)
    assert f"| 32x48 | {record['result']['single_s']:.3f} |" in text and f'"{cpu}"' in text


def test_wall_records_the_status_and_the_result_file(tmp_path):
    work, path = tmp_path / "work", tmp_path / "wall.json"
    work.mkdir()
    script = "import json, sys; json.dump({'answer': 42}, open('out.json', 'w')); sys.exit(3)"
    run = subprocess.run(TOOL + ["wall", "--cwd", str(work), "--result-file", "out.json", "--record", str(path),
                                 "--", sys.executable, "-c", script], capture_output=True, cwd=REPO)
    assert run.returncode == 3
    result = strict_load(path)["result"]
    assert result["exit_status"] == 3 and result["result_file"] == {"answer": 42}
    assert result["new_clone"] is True and result["wall_s"] >= 0


def test_machine_text_names_the_isa(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some Xeon\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_bf16\n"
                       "model name\t: Some Xeon\n")
    facts = cpu_facts(str(cpuinfo))
    assert facts["cpu"] == "Some Xeon" and facts["flags"] == ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
    text = machine_text({**facts, "cores": 2, "torch": "2.13.0", "torch_cpu_capability": "AVX512", "gpu": None})
    assert "AMX-BF16" in text and "no AMX" not in text and "no AVX-512" not in text
    plain = machine_text({**cpu_facts(str(tmp_path / "absent")), "cores": 2, "torch": "2.13.0",
                          "torch_cpu_capability": "DEFAULT", "gpu": "NVIDIA H200"})
    assert "no AVX-512, no AMX, NVIDIA H200" in plain


def test_benchmark_threads_are_pinned_before_numpy_loads_and_wall_keeps_the_environment(tmp_path):
    """OpenBLAS sizes its thread pool when numpy loads: a numpy import before main() pins
    OPENBLAS_NUM_THREADS would time sample preparation with a second, spinning thread."""
    probe = ("import runpy, sys; sys.argv = ['benchmark.py', '--help']; "
             f"mod = runpy.run_path({str(REPO / 'tools' / 'benchmark.py')!r}, run_name='not_main'); "
             "print('numpy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    script = "import json, os; json.dump({'omp': os.environ.get('OMP_NUM_THREADS')}, open('env.json', 'w'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run(TOOL + ["wall", "--cwd", str(tmp_path), "--result-file", "env.json", "--record",
                           str(tmp_path / "r.json"), "--", sys.executable, "-c", script],
                   check=True, capture_output=True, cwd=REPO, env=env)
    assert strict_load(tmp_path / "r.json")["result"]["result_file"] == {"omp": None}
