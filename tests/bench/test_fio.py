"""fio cross-check: parsing recorded fio JSON, the command built for a case, fio missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpubench.bench import fio
from gpubench.bench.iouring import IoParams
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


def test_fio_missing_is_said_clearly(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="fio is not installed"):
        fio.require_fio()
    assert fio.cross_check(_params(), "f.dat", 1 << 20, 0.1) == {"skipped": "fio is not installed"}


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
