"""`alertd test`: rule unit tests - the file's shape (spec), event synthesis (events), the runner
on the evaluation harness (runner), JUnit output (junit)."""

from alertd.ruletest.junit import junit_xml
from alertd.ruletest.runner import Result, run_test_files

__all__ = ["Result", "junit_xml", "run_test_files"]
