from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

from gpubench.report.junit import comparison_junit, run_junit
from gpubench.results.compare import compare
from tests.factories import RANDREAD, RANDWRITE, SEQREAD, SEQWRITE, failed, measured, noisy, run_of, waived


def test_run_junit_one_testcase_per_result() -> None:
    run = run_of(
        (measured(SEQREAD), waived(RANDREAD, "O_DIRECT fails on tmpfs"), failed(RANDWRITE, "mismatch at offset 4096")),
        label="<script>alert(1)</script>",
    )
    root = ET.fromstring(run_junit(run))
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "gpubench run <script>alert(1)</script>"
    assert (suite.get("tests"), suite.get("skipped"), suite.get("errors"), suite.get("failures")) == ("3", "1", "1", "0")
    assert root.get("tests") == "3"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases[SEQREAD.name].get("classname") == "iouring"
    assert cases[SEQREAD.name].find("skipped") is None and cases[SEQREAD.name].find("error") is None
    assert cases[RANDREAD.name].find("skipped").get("message") == "O_DIRECT fails on tmpfs"
    assert cases[RANDWRITE.name].find("error").get("message") == "mismatch at offset 4096"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["uid"] == run.uid and properties["kernel"] == run.metadata["kernel"]


def test_a_testcase_takes_the_time_of_its_rounds_not_of_the_whole_run_between_them() -> None:
    spread = replace(measured(SEQREAD), started=100.0, ended=160.0, extra={"seconds_in_rounds": 4.5})
    older = replace(measured(RANDREAD), started=100.0, ended=102.25, extra={})  # stored before rounds were timed
    cases = {c.get("name"): c.get("time") for c in ET.fromstring(run_junit(run_of((spread, older)))).iter("testcase")}
    assert cases == {SEQREAD.name: "4.500", RANDREAD.name: "2.250"}


def test_characters_xml_cannot_carry_are_replaced() -> None:
    run = run_of((failed(reason="bad\x00byte\x1b[31m"),))
    root = ET.fromstring(run_junit(run))
    message = root.find("testsuite/testcase/error").get("message")
    assert message == "bad\ufffdbyte\ufffd[31m"


def test_comparison_junit_regressions_fail() -> None:
    slow, gone, steady, skip = SEQREAD, RANDREAD, RANDWRITE, SEQWRITE
    base = run_of((measured(slow, noisy(100.0, seed=1)), measured(gone), measured(steady, noisy(50.0, seed=3)), waived(skip)))
    new = run_of((measured(slow, noisy(75.0, seed=2)), waived(gone, "io_uring disabled"), measured(steady, noisy(50.0, seed=4)), waived(skip)))
    root = ET.fromstring(comparison_junit([compare(base, new), compare(base, base)]))
    first, second = root.findall("testsuite")
    cases = {c.get("name"): c for c in first.findall("testcase")}
    assert cases[slow.name].find("failure").get("type") == "worse"
    assert "io_uring disabled" in cases[gone.name].find("failure").get("message")
    assert cases[steady.name].find("failure") is None and cases[steady.name].find("skipped") is None
    assert cases[skip.name].find("skipped") is not None
    assert (first.get("failures"), first.get("skipped"), second.get("failures")) == ("2", "1", "0")
    assert root.get("failures") == "2"
