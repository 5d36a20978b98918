"""JUnit XML of rule test results, for CI systems."""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree as ET

from alertd.ruletest.runner import Result


def junit_xml(results: Sequence[Result]) -> bytes:
    """JUnit XML, one testsuite per file, for CI systems."""
    root = ET.Element("testsuites")
    by_file: dict[str, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, rs in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(rs)), failures=str(sum(not r.ok for r in rs)))
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=file, name=r.name, time=f"{r.seconds:.3f}")
            if not r.ok:
                ET.SubElement(
                    case, "failure", message=r.message.splitlines()[0] if r.message else "failed"
                ).text = r.message
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
