from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "results"))
from history_factories import build_result, build_run, noisy  # noqa: E402

from gpubench.report.junit import comparison_junit, run_junit  # noqa: E402
from gpubench.results.compare import compare  # noqa: E402
from gpubench.results.model import ResultStatus  # noqa: E402


def test_run_junit_one_testcase_per_result() -> None:
    run = build_run(
        (
            build_result("seq"),
            build_result("direct", status=ResultStatus.WAIVED, reason="O_DIRECT fails on tmpfs"),
            build_result("verify", status=ResultStatus.FAILED, reason="mismatch at offset 4096"),
        ),
        label="<script>alert(1)</script>",
    )
    root = ET.fromstring(run_junit(run))
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "gpubench run <script>alert(1)</script>"
    assert (suite.get("tests"), suite.get("skipped"), suite.get("errors"), suite.get("failures")) == ("3", "1", "1", "0")
    assert root.get("tests") == "3"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["seq"].get("classname") == "uring"
    assert cases["seq"].find("skipped") is None and cases["seq"].find("error") is None
    assert cases["direct"].find("skipped").get("message") == "O_DIRECT fails on tmpfs"
    assert cases["verify"].find("error").get("message") == "mismatch at offset 4096"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["uid"] == run.uid and properties["kernel"] == "6.8.0-45-generic"


def test_a_testcase_takes_the_time_of_its_rounds_not_of_the_whole_run_between_them() -> None:
    spread = build_result("seq", started=100.0, ended=160.0, extra={"seconds_in_rounds": 4.5})
    older = build_result("rand", started=100.0, ended=102.25)  # stored before rounds were timed
    cases = {c.get("name"): c.get("time") for c in ET.fromstring(run_junit(build_run((spread, older)))).iter("testcase")}
    assert cases == {"seq": "4.500", "rand": "2.250"}


def test_characters_xml_cannot_carry_are_replaced() -> None:
    run = build_run((build_result("ctl", status=ResultStatus.FAILED, reason="bad\x00byte\x1b[31m"),))
    root = ET.fromstring(run_junit(run))
    message = root.find("testsuite/testcase/error").get("message")
    assert message == "bad\ufffdbyte\ufffd[31m"


def test_comparison_junit_regressions_fail() -> None:
    base = build_run((build_result("slow", samples=noisy(100.0, seed=1)), build_result("gone"), build_result("steady", samples=noisy(50.0, seed=3)), build_result("skip", status=ResultStatus.WAIVED)))
    new = build_run(
        (
            build_result("slow", samples=noisy(75.0, seed=2)),
            build_result("gone", status=ResultStatus.WAIVED, reason="io_uring disabled"),
            build_result("steady", samples=noisy(50.0, seed=4)),
            build_result("skip", status=ResultStatus.WAIVED),
        )
    )
    root = ET.fromstring(comparison_junit([compare(base, new), compare(base, base)]))
    first, second = root.findall("testsuite")
    cases = {c.get("name"): c for c in first.findall("testcase")}
    assert cases["slow"].find("failure").get("type") == "worse"
    assert "io_uring disabled" in cases["gone"].find("failure").get("message")
    assert cases["steady"].find("failure") is None and cases["steady"].find("skipped") is None
    assert cases["skip"].find("skipped") is not None
    assert (first.get("failures"), first.get("skipped"), second.get("failures")) == ("2", "1", "0")
    assert root.get("failures") == "2"
