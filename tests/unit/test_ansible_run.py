"""depcon/ansible_run.py: a failed task is reported with what its command said."""

from __future__ import annotations

import pytest

from depcon.ansible_run import failure_message

pytestmark = pytest.mark.unit


def test_a_failed_command_says_its_last_stderr_lines() -> None:
    res = {
        "msg": "non-zero return code",
        "rc": 1,
        "stdout": "node/lab-w1 cordoned",
        "stderr": "error: unable to drain node\n"
        "cannot delete Pods that declare no controller: depcon-system/slo-fits\n",
    }
    msg = failure_message(res)
    assert msg.startswith("non-zero return code (rc 1): ")
    assert "depcon-system/slo-fits" in msg and "unable to drain" in msg


def test_stdout_when_the_command_wrote_no_stderr() -> None:
    assert failure_message({"msg": "non-zero return code", "rc": 2, "stdout": "a\nb"}) == (
        "non-zero return code (rc 2): a | b"
    )


def test_a_module_failure_keeps_its_message_alone_and_bounded() -> None:
    assert failure_message({"msg": "Could not find  the\nrequested service"}) == (
        "Could not find the requested service"
    )
    assert len(failure_message({"msg": "x" * 2000})) == 500


def test_a_no_log_result_says_it_was_hidden_and_nothing_else() -> None:
    res = {"censored": "the output has been hidden", "changed": False}
    assert failure_message(res) == "the output has been hidden"
