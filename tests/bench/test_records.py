"""Each family reads its stored cases back into a typed record (what the reports pair cases by),
from the parameters its own planning stores; parameters of another version give None, not a guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubench.bench.gpu import gds, hmm, memcpy, p2p
from gpubench.bench.io.plan import IoParams, plan_cases
from gpubench.bench.memtier import MemTier, TierParams
from gpubench.probe import Source, probe

SERVER = Path(__file__).resolve().parents[2] / "probes" / "nvidia-multigpu"


@pytest.fixture(scope="module")
def server():
    return probe(Source(SERVER), ["gpu", "p2p", "hmm", "gds", "cxl"])


@pytest.mark.parametrize("engine", ["iouring", "psync"])
def test_io_cases_read_back(engine):
    for planned in plan_cases(engine, "default", {}):
        assert IoParams.from_params(engine, planned.to_params()) == planned
    assert IoParams.from_params(engine, {"pattern": "read", "bs": 4096}) is None


@pytest.mark.parametrize("family,record", [(memcpy, memcpy.CopyParams), (gds, gds.GdsParams), (hmm, hmm.HmmParams), (p2p, p2p.PairParams)],
                         ids=["memcpy", "gds", "hmm", "p2p"])
def test_gpu_cases_read_back(server, family, record):
    cases = family.plan(server, "default", {})
    assert cases
    for case in cases:
        read = record.from_params(case.params)
        assert read is not None, case.name
        assert all(getattr(read, k) == case.params[k] for k in read.__dataclass_fields__ if k in case.params), case.name
    assert record.from_params({"size": 1}) is None


def test_p2p_reads_the_path_that_ran_from_the_extras(server):
    case = p2p.plan(server, "quick", {})[0]
    assert p2p.PairParams.from_params(case.params).via == case.params["via"]
    assert p2p.PairParams.from_params(case.params, {"via": "host"}).via == "host"


def test_memtier_cases_read_back(server):
    for case in MemTier().cases(server, "quick", {}):
        read = TierParams.from_params(case.params)
        assert read is not None and read.kernel == case.params["kernel"] and read.local == (case.params["cpu_node"] == case.params["mem_node"])
