"""Unit tests of the VM harness itself (no VM): the cpio writer and the dmesg verdict."""

from __future__ import annotations

import pytest

from harness.vm.cpio import CpioWriter
from harness.vm.runner import VmError, VmResult

pytestmark = pytest.mark.unit


def _result(rc: int | None, dmesg: str = "", output: str = "") -> VmResult:
    return VmResult(
        kernel="k",
        rc=rc,
        output=output,
        dmesg=dmesg,
        console=dmesg,
        boot_seconds=1.0,
        total_seconds=2.0,
        timed_out=False,
    )


def test_cpio_is_newc_padded_and_deterministic() -> None:
    def build() -> bytes:
        w = CpioWriter()
        w.add_file("/a/b/c.txt", b"hello", 0o644)
        w.add_symlink("/a/l", "b")
        return w.render()

    data = build()
    assert data == build()
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"a/b/c.txt\0" in data and b"TRAILER!!!\0" in data


@pytest.mark.parametrize(
    "line",
    [
        "[ 1.0] BUG: kernel NULL pointer dereference",
        "[ 1.0] WARNING: CPU: 0 PID: 1 at lib/refcount.c:25",
        "[ 1.0] Oops: 0000 [#1] SMP",
        "[ 1.0] refcount_t: underflow; use-after-free.",
    ],
)
def test_bad_dmesg_line_fails_a_passing_script(line: str) -> None:
    with pytest.raises(VmError, match="bad line"):
        _result(0, dmesg=f"[ 0.5] vif: loaded\n{line}\n").check()


def test_clean_pass_and_failures() -> None:
    _result(0, dmesg="[ 0.5] vif: loaded\n").check()
    with pytest.raises(VmError, match="exit code 1"):
        _result(1).check()
    with pytest.raises(VmError, match="did not finish"):
        _result(None).check()
