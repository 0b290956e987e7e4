"""The environment record: the busy-machine warning (other processes' CPU use now, not the lagging
load average) and the variables that change timings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from alexbench import environment
from alexbench.cli import app


def _machine(monkeypatch, load, busy_s, own_s, cores=2):
    """/proc/stat's busy seconds and this process's CPU seconds at each read, over one sample."""
    reads = iter(zip(busy_s, own_s, strict=True))
    monkeypatch.setattr(environment, "_cpu_busy_seconds", lambda: next(reads))
    monkeypatch.setattr(environment, "load_average", lambda: load)
    monkeypatch.setattr(environment, "usable_cores", lambda: cores)
    clock = iter([0.0, 0.5])  # the sample spans half a second, without waiting for it
    fake_time = SimpleNamespace(sleep=lambda s: None, monotonic=lambda: next(clock))
    monkeypatch.setattr(environment, "time", fake_time)


def test_a_high_load_average_from_work_that_ended_is_not_busy(monkeypatch):
    # Right after a sweep the 1-minute average reads 1.8 on an idle 2-core machine.
    _machine(monkeypatch, 1.8, busy_s=(100.0, 100.02), own_s=(5.0, 5.0))
    assert environment.busy_warning(environment.others_cpu_now()) is None


def test_other_processes_using_a_core_now_is_busy(monkeypatch):
    _machine(monkeypatch, 0.3, busy_s=(100.0, 100.5), own_s=(5.0, 5.0))
    warning = environment.busy_warning(environment.others_cpu_now())
    assert warning and "1.0 of 2 cores in use by others" in warning


def test_this_process_own_threads_are_not_other_processes(monkeypatch):
    # An OpenMP pool still spinning after the last torch call: this process's time, left out.
    _machine(monkeypatch, 1.8, busy_s=(100.0, 101.0), own_s=(5.0, 6.0))
    assert environment.others_cpu_now() == pytest.approx(0.0)


def test_without_proc_stat_the_load_average_decides(monkeypatch):
    monkeypatch.setattr(environment, "_cpu_busy_seconds", lambda: None)
    monkeypatch.setattr(environment, "usable_cores", lambda: 2)
    monkeypatch.setattr(environment, "load_average", lambda: 1.5)
    assert "load average 1.50" in (environment.busy_warning(environment.others_cpu_now()) or "")
    monkeypatch.setattr(environment, "load_average", lambda: 0.4)
    assert environment.busy_warning(environment.others_cpu_now()) is None


def test_proc_stat_is_read_where_it_exists():
    sample = environment._cpu_busy_seconds()
    if sample is None:
        pytest.skip("no /proc/stat here")
    busy, own = sample
    assert busy > 0 and own > 0


def test_thread_and_allocator_variables_are_recorded(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so.4")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MALLOC_CONF", "")  # set empty: unset, not a difference for compare
    monkeypatch.setenv("ALEXBENCH_UNRELATED", "x")
    env = environment.capture()["env"]
    assert env["LD_PRELOAD"] == "/usr/lib/libtcmalloc.so.4" and env["OMP_NUM_THREADS"] == "1"
    assert "ALEXBENCH_UNRELATED" not in env and "MALLOC_CONF" not in env
    r = CliRunner().invoke(app, ["info"], terminal_width=200)
    assert r.exit_code == 0
    assert "LD_PRELOAD=/usr/lib/libtcmalloc.so.4" in r.stdout and "OMP_NUM_THREADS=1" in r.stdout


def test_the_environment_records_the_threads_the_measurement_sets():
    import torch

    assert environment.capture()["torch_threads"] == torch.get_num_threads()
    assert environment.capture(threads=1)["torch_threads"] == 1


def test_a_threads_run_is_labelled_apart_from_a_default_one():
    from alexbench.results import machine_label

    run = {"environment": {"cpu": {"model": "AMD EPYC", "logical_cores": 2}}}
    assert machine_label(run) == "AMD EPYC, 2 cores"
    run["settings"] = {"options": {"threads": 1}}
    assert machine_label(run) == "AMD EPYC, 2 cores, --threads 1"


def test_cpus_under_one_generic_name_are_labelled_apart():
    """A hypervisor names Zen 4 and Zen 5 both 'AMD EPYC': a report of runs from both VMs
    labelled them as one machine."""
    from alexbench.results import machine_label

    def run(model: str, cpu_id: str) -> dict:
        return {"environment": {"cpu": {"model": model, "id": cpu_id, "usable_cores": 2}}}

    zen4 = run("AMD EPYC", "AuthenticAMD family 25 model 17 stepping 1")
    zen5 = run("AMD EPYC", "AuthenticAMD family 26 model 2 stepping 1")
    assert machine_label(zen4) == "AMD EPYC (family 25 model 17), 2 cores"
    assert machine_label(zen5) == "AMD EPYC (family 26 model 2), 2 cores"
    # A name with a model number says it already; a file without an id keeps its name.
    named = run("AMD EPYC 7763 64-Core Processor", "AuthenticAMD family 25 model 1 stepping 1")
    assert machine_label(named) == "AMD EPYC 7763 64-Core Processor, 2 cores"
    assert machine_label(run("AMD EPYC", "")) == "AMD EPYC, 2 cores"
    gcp = run("Intel(R) Xeon(R) CPU @ 2.20GHz", "GenuineIntel family 6 model 85 stepping 7")
    assert machine_label(gcp) == "Intel(R) Xeon(R) CPU (family 6 model 85) @ 2.20GHz, 2 cores"
    from alexbench.results_shape import cpu_name
    from alexbench.runs import short_cpu_name

    assert short_cpu_name(cpu_name(gcp["environment"]["cpu"])) == "Intel Xeon (family 6 model 85)"
    assert machine_label({"environment": {"cpu": {}}}) == "?"


def test_others_cpu_over_a_span_counts_work_that_started_during_it(monkeypatch):
    """A sample at the start missed a job that began a minute into the sweep (a helper's tune
    pruned configurations measured 10x slow, with no warning)."""
    from alexbench import environment

    counters = iter([(100.0, 10.0), (190.0, 40.0)])  # (cores busy, this process), in seconds
    clock = iter([1000.0, 1060.0])
    monkeypatch.setattr(environment, "_cpu_busy_seconds", lambda: next(counters))
    monkeypatch.setattr(environment, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(environment, "usable_cores", lambda: 2)
    mark = environment.cpu_mark()
    others = environment.others_cpu_since(mark)
    assert others == pytest.approx(1.0)  # (90 - 30) s of others' CPU over 60 s
    warning = environment.busy_during_warning(others, "the sweep")
    assert warning and "used 1.0 of 2 cores on average during the sweep" in warning
    assert environment.busy_during_warning(0.5, "the sweep") is None  # a quarter: not busy
    assert environment.others_cpu_since(None) is None


def test_the_processes_a_measurement_starts_are_its_own_work_not_others():
    """torch.compile's compiler processes and image-decoding workers counted as other processes:
    a cold compile read as 0.6 of 2 cores busy (a reviewer's check), and bench warned."""
    import subprocess
    import sys

    burn = "import sys, time\nsys.stdin.readline()\nt = time.process_time()\n"
    burn += "while time.process_time() - t < 0.3: pass\nprint('done', flush=True)\ntime.sleep(30)"
    child = subprocess.Popen(
        [sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        before = environment._own_cpu_seconds()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        assert environment._own_cpu_seconds() - before >= 0.25  # alive: read from /proc
    finally:
        child.kill()
        child.wait()
    assert environment._own_cpu_seconds() - before >= 0.25  # reaped: os.times()'s children
