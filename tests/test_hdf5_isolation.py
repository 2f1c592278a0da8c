"""libhdf5 runs in a child process (``convc.hdf5``): a crash, a hang or a runaway allocation
while reading a file becomes a located refusal, and convc itself goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from convc import hdf5
from convc.diagnostics import ConvcError


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "3.0.0"
        handle.create_dataset("layers/dense/vars/0", data=np.arange(12, dtype="f4").reshape(3, 4))
        # stored compressed and chunked, so that the reader is asked for them (a dataset stored
        # as it is, like vars/0, is read by convc itself and needs no reader)
        handle.create_dataset("layers/dense/vars/1", data=np.arange(4, dtype="f4"), compression=1)
        handle.create_dataset("big", data=np.zeros((64 << 20) // 4, dtype="f4"), chunks=True)
    return path


def _reader_pid() -> int:
    """The one child of the fork server: the process reading the open file."""
    server = hdf5._server()._process.pid
    with open(f"/proc/{server}/task/{server}/children") as children:
        pids = [int(pid) for pid in children.read().split()]
    assert len(pids) == 1, pids
    return pids[0]


def _gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.05)
    return False


def test_the_tree_and_a_dataset_come_back_as_h5py_would_give_them(weights_file):
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        assert handle.attrs == {"keras_version": "3.0.0"}
        dataset = handle.get("layers/dense/vars/0")
        assert isinstance(dataset, hdf5.Dataset)
        assert dataset.shape == (3, 4) and dataset.dtype == np.float32
        assert list(handle["layers"]) == ["dense"] and "layers/dense/vars" in handle
        np.testing.assert_array_equal(dataset[()], np.arange(12, dtype="f4").reshape(3, 4))


def test_a_crash_of_the_reader_is_a_located_refusal(weights_file):
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        os.kill(_reader_pid(), signal.SIGSEGV)
        with pytest.raises(ConvcError, match=r"libhdf5 crashed \(SIGSEGV\)") as caught:
            handle["layers/dense/vars/1"][()]
    assert caught.value.path == "w.h5"


def test_a_reader_that_stops_answering_is_refused_and_killed(weights_file, monkeypatch):
    monkeypatch.setattr(hdf5, "STALL_SECONDS", 1.0)
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        pid = _reader_pid()
        os.kill(pid, signal.SIGSTOP)  # as a loop inside libhdf5 would look
        start = time.monotonic()
        with pytest.raises(ConvcError, match="did not answer within 1 s"):
            handle["layers/dense/vars/1"][()]
        assert time.monotonic() - start < 5
    assert _gone(pid), "the fork server kills a reader that convc gave up on"


def test_the_reader_cannot_allocate_past_its_budget(weights_file, monkeypatch):
    monkeypatch.setattr(hdf5, "BASE_ALLOWANCE", 16 << 20)
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        big = handle["big"]
        # the child is allowed the bytes it is asked for; a read of 64 MiB as if it were small
        # is what a lying file would cause
        monkeypatch.setattr(big, "shape", (1,))
        with pytest.raises(ConvcError, match="as something else|more memory"):
            big[()]
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        assert handle["big"][()].shape == ((64 << 20) // 4,)  # within its budget, it reads


def test_a_script_that_uses_convc_is_not_run_again_by_the_reader(weights_file, tmp_path):
    """The reader is not a multiprocessing child: nothing re-imports the caller's __main__."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            print("ran")
            from convc import hdf5
            with hdf5.open_hdf5({str(weights_file)!r}, "w.h5") as handle:
                print(handle["layers/dense/vars/0"][()].sum())
            """
        )
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(hdf5.__file__)))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ran", "66.0"]


def test_a_scalar_dataset_comes_back_as_a_scalar(tmp_path):
    """A 0-d dataset (a Normalization layer's count, an optimizer's iteration) keeps its shape
    (); seen failing: EfficientNetB0's .keras was refused as 'read as something else'."""
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as handle:
        handle["count"] = np.int64(7)
        handle["mean"] = np.float32(0.5)
    with hdf5.open_hdf5(path, "s.h5") as handle:
        count, mean = handle["count"][()], handle["mean"][()]
    assert count.shape == () and count.dtype == np.int64 and int(count) == 7
    assert mean.shape == () and float(mean) == 0.5


def test_a_dataset_stored_as_it_is_needs_no_reader(weights_file):
    """The tree says where a dataset stored as it is lies, and convc reads it without asking:
    a reader that has stopped (or crashed) after sending the tree is not needed for it."""
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        os.kill(_reader_pid(), signal.SIGSTOP)
        np.testing.assert_array_equal(
            handle["layers/dense/vars/0"][()], np.arange(12, dtype="f4").reshape(3, 4)
        )


def test_a_dataset_never_written_is_still_refused_when_read(tmp_path):
    """A dataset declared and never written has no bytes to place: it is asked for, and the
    reader refuses it (libhdf5 would read its fill value), as one partly written is."""
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("written", data=np.ones(8, "f4"))
        handle.create_dataset("never", (1000,), "f4")
        handle.create_dataset("partly", (64, 64), "f4", chunks=(8, 8))[:8, :8] = 1.0
    with hdf5.open_hdf5(path, "u.h5") as handle:
        assert handle["written"][()].sum() == 8
        with pytest.raises(
            ConvcError, match=r"'/never' declares 4,000 bytes .* 0 of them \(never written\)"
        ):
            handle["never"][()]
    with (
        hdf5.open_hdf5(path, "u.h5") as handle,
        pytest.raises(ConvcError, match=r"'/partly' is stored in 64 chunks .* 1 of them"),
    ):
        handle["partly"][()]
