"""fio cross-check: parsing recorded fio JSON, the command built for a case, fio missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpubench.bench.engines import fio
from gpubench.bench.io.plan import IoParams
from gpubench.errors import UserError

DATA = Path(__file__).parent / "data"


def test_parses_a_recorded_mixed_io_uring_run():
    figures = fio.parse_fio_json((DATA / "fio-io_uring-randrw-4k-qd8-j2-direct.json").read_text())
    assert figures.version == "fio-3.33" and figures.error == 0
    assert figures.read.ios == 21625 and figures.write.ios == 9363
    assert figures.read.bw_mbps == pytest.approx(176.798403)
    assert figures.read.iops == pytest.approx(43163.672655)
    assert figures.read.clat_us["p50"] == pytest.approx(195.584)
    assert figures.read.clat_us["p999"] == pytest.approx(4554.752)
    assert figures.write.clat_us["max"] == pytest.approx(7139.685)
    assert figures.bw_mbps == pytest.approx(176.798403 + 76.548598)
    d = figures.to_dict()
    assert d["iops"] == pytest.approx(43163.672655 + 18688.622754) and d["write"]["ios"] == 9363


def test_parses_a_recorded_psync_read_and_skips_leading_warnings():
    text = "fio: some warning printed first\n" + (DATA / "fio-psync-read-128k-j1-buffered.json").read_text()
    figures = fio.parse_fio_json(text)
    assert figures.write is None
    assert figures.read.bytes == 6217924608 and figures.read.ios == 47439
    assert figures.read.clat_us["p99"] == pytest.approx(11.712)


def test_unreadable_output_is_an_error():
    with pytest.raises(ValueError):
        fio.parse_fio_json("fio: no such file")
    with pytest.raises(ValueError, match="no jobs"):
        fio.parse_fio_json('{"fio version": "x", "jobs": []}')


def _params(**kw) -> IoParams:
    base = dict(engine="iouring", pattern="randread", bs=4096, qd=32, jobs=2, direct=False, size=1 << 20,
                runtime=0.5)
    return IoParams(**{**base, **kw})


def test_the_fio_job_matches_the_case():
    warm = fio.job_for(_params(), "f.dat", 1 << 20, 0.5, "io_uring").command("fio")
    assert "--invalidate=0" in warm and "--iodepth=32" in warm and "--numjobs=2" in warm
    assert "--runtime=500ms" in warm and "--group_reporting" in warm and "--output-format=json" in warm
    direct = fio.job_for(_params(direct=True, pattern="randrw", mix=60), "f.dat", 1 << 20, 1, "psync").command("fio")
    assert "--invalidate=0" not in direct and "--direct=1" in direct and "--rwmixread=60" in direct
    assert "--iodepth=1" in direct and "--ioengine=psync" in direct
    sized = fio.job_for(_params(io_size=1 << 20), "f.dat", 1 << 20, 1, "io_uring").command("fio")
    assert "--io_size=1048576" in sized and "--time_based" not in sized


@pytest.mark.parametrize("engine, ioengine, jobs_in_fio", [("iouring", "io_uring", 2), ("psync", "psync", 8),
                                                          ("psync", "io_uring", 2)])
def test_sequential_fio_jobs_each_work_on_a_region_of_their_own_as_gpubench_jobs_do(engine, ioengine, jobs_in_fio):
    region = (1 << 20) // jobs_in_fio
    command = fio.job_for(_params(engine=engine, pattern="read", qd=4), "f.dat", 1 << 20, 1, ioengine).command("fio")
    assert f"--numjobs={jobs_in_fio}" in command
    assert f"--size={region}" in command and f"--offset_increment={region}" in command
    shared = fio.job_for(_params(engine=engine, pattern="randread", qd=4), "f.dat", 1 << 20, 1, ioengine).command("fio")
    assert "--size=1048576" in shared and not any(a.startswith("--offset_increment") for a in shared)


def test_fio_missing_is_said_clearly(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="fio is not installed"):
        fio.require_fio()
    assert fio.cross_check(_params(), "f.dat", 1 << 20, 0.1) == {"skipped": "fio is not installed"}


def test_fio_figures_say_they_are_unverified(monkeypatch):
    recorded = fio.parse_fio_json((DATA / "fio-io_uring-randrw-4k-qd8-j2-direct.json").read_text())
    monkeypatch.setattr(fio, "fio_binary", lambda: "fio")
    monkeypatch.setattr(fio, "run_fio", lambda job, binary: recorded)
    out = fio.cross_check(_params(verify=True), "f.dat", 1 << 20, 0.1)
    assert set(out) == {"io_uring", "psync"}
    for engine in ("io_uring", "psync"):
        assert out[engine]["verify"] is False
        assert not any("verify" in option for option in out[engine]["options"])


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_a_real_fio_run_is_read_back(tmp_path):
    target = tmp_path / "data.dat"
    target.write_bytes(b"\x5a" * (1 << 20))
    out = fio.cross_check(_params(jobs=1, qd=4), str(target), 1 << 20, 0.1)
    assert set(out) == {"io_uring", "psync"}
    for engine in ("io_uring", "psync"):
        assert out[engine].get("error") == 0, out[engine]
        assert out[engine]["read"]["ios"] > 0 and out[engine]["bw_mbps"] > 0
        assert not any(a.startswith("--filename=") for a in out[engine]["options"])


def test_calibration_says_clearly_when_fio_is_missing(monkeypatch, tmp_path):
    from gpubench.calibrate import iouring as calibrate_iouring

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="fio is not installed"):
        calibrate_iouring.calibrate(0.1, 1, tmp_path)


def test_calibration_cases_cover_one_job_and_one_per_core():
    from gpubench.calibrate.iouring import calibration_cases

    cases = calibration_cases(cores=4)
    assert [(c.pattern, c.bs, c.qd, c.direct, c.jobs, c.goal) for c in cases] == [
        ("randread", 4096, 32, False, 1, 1.3), ("randread", 4096, 32, False, 4, 1.3),
        ("randread", 4096, 32, True, 1, 1.0), ("randread", 4096, 32, True, 4, 1.0),
        ("read", 131072, 8, True, 1, 0.95), ("read", 131072, 8, True, 4, 0.95),
    ]


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_a_tiny_interleaved_calibration(tmp_path):
    from gpubench.calibrate import iouring as calibrate_iouring
    from gpubench.bench.engines.iofile import MEMORY_FILESYSTEMS, mount_of

    from gpubench.probe.iouring import binding_selftest

    if not binding_selftest().get("ring"):
        pytest.skip("no io_uring ring can be created here")
    mount = mount_of(tmp_path)
    if mount is not None and mount.fstype in MEMORY_FILESYSTEMS:
        pytest.skip("the temporary directory is in memory; O_DIRECT needs a disk")
    case = calibrate_iouring.CalibrationCase("4 KiB randread QD4 O_DIRECT", "randread", 4096, 4, True, 1, 1.0)
    cal = calibrate_iouring.calibrate(0.1, 2, tmp_path, 4 << 20, cases=[case])
    (outcome,) = cal.outcomes
    assert len(outcome.gpubench_mbps) == len(outcome.fio_mbps) == len(outcome.ratios) == 2
    d = cal.to_dict()["cases"][0]
    assert d["ratio_min"] <= d["ratio_median"] <= d["ratio_max"]
    assert list(tmp_path.iterdir()) == []
