"""When a program that made a worker ends (iii/_lifecycle.py).

A worker program (it registered functions and did not shut down) keeps
serving after its last line until ``shutdown()`` or Ctrl-C; a script that
only made calls, one that shut its worker down, and one that died of an
uncaught exception end at once.  Each runs as a child process; the tests
wait on its output and its exit, never on a clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import iii

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: CPython 3.12.0 and 3.12.1 refuse to start a thread once the main thread has
#: ended (3.12.2 lifted that, gh-113964): a call that needs a new handler
#: thread is answered with a failure naming that, never lost.
NO_THREADS_AFTER_MAIN = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 2)


#: A program run from a terminal has Python's Ctrl-C handler; one started in
#: the background by a script (as CI may start this suite) inherits SIGINT
#: ignored, and keeps ignoring it.  The Ctrl-C tests give it the terminal's.
CTRL_C = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"

#: The hold's log line, on stderr: the program is past its last line and waiting.
LOG_INFO = "import logging\nlogging.basicConfig(level=logging.INFO)\n"


def _start(url: str, body: str, *, prelude: str = "") -> subprocess.Popen[str]:
    code = prelude + f"import iii\nworker = iii.register_worker({url!r})\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        out, err = proc.communicate()
        pytest.fail(f"the program did not end; its threads:\n{err}")
    return proc.returncode, out, err


def _wait_for_hold(proc: subprocess.Popen[str]) -> str:
    """Read the program's stderr up to the hold's log line, and return that line."""
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        assert line, "the program ended without holding"
        if "keeps serving" in line:
            return line


def test_a_script_that_only_calls_ends_at_its_last_line(iii_engine):
    with iii.register_worker(iii_engine.url) as server:
        server.register_function("exit::double", lambda d: d * 2)
        iii_engine.wait_for_function("exit::double")
        proc = _start(
            iii_engine.url,
            """
            print(worker.trigger({"function_id": "exit::double", "payload": 21}), flush=True)
            """,
        )
        code, out, err = _finish(proc)
    assert code == 0, err
    assert out.split() == ["42"]


def test_a_worker_program_serves_after_its_last_line_until_ctrl_c(iii_engine):
    proc = _start(
        iii_engine.url,
        """
        worker.register_function("exit::greet", lambda d: f"hello {d}")
        print("last line", flush=True)
        """,
        prelude=CTRL_C + LOG_INFO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "last line\n"
        assert "stop it with shutdown() or Ctrl-C" in _wait_for_hold(proc)
        iii_engine.wait_for_function("exit::greet")
        with iii.register_worker(iii_engine.url) as caller:
            # Answered after the program's last line ran: it is still serving.
            request = {"function_id": "exit::greet", "payload": "ada"}
            if NO_THREADS_AFTER_MAIN:
                with pytest.raises(iii.IIIInvocationError, match="no thread could be started"):
                    caller.trigger(request)
            else:
                assert caller.trigger(request) == "hello ada"
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            code, _, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, err
    assert "KeyboardInterrupt" not in err  # a graceful stop, not a traceback
    assert "interrupted; shutting 1 worker(s) down" in err
    iii_engine.wait_for(
        lambda: not any(f["function_id"] == "exit::greet" for f in iii_engine.functions())
    )


def test_a_worker_program_that_ignores_ctrl_c_says_how_to_stop_it(iii_engine):
    proc = _start(
        iii_engine.url,
        """
        worker.register_function("exit::ignored", lambda d: d)
        """,
        prelude="import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + LOG_INFO,
    )
    try:
        line = _wait_for_hold(proc)
        assert "stop it with shutdown() (SIGINT is ignored in this process)" in line
    finally:
        proc.kill()
        proc.communicate()


class _Held:
    """A held worker whose first ``serves`` meets a Ctrl-C when ``interrupt``."""

    def __init__(self, interrupt: bool) -> None:
        self.interrupt = interrupt
        self.stopped = 0

    def serves(self) -> bool:
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return True

    def wait_closed(self) -> None:
        raise AssertionError("not reached: the Ctrl-C came first")

    def stop(self) -> None:
        self.stopped += 1

    def describe(self) -> str:
        return "a test worker"


def test_ctrl_c_before_the_wait_still_stops_every_worker(monkeypatch):
    # Ctrl-C can land anywhere in the exit hook, not only in the wait.
    from iii import _lifecycle

    first, second = _Held(interrupt=True), _Held(interrupt=False)
    monkeypatch.setattr(_lifecycle, "_held", {1: first, 2: second})
    monkeypatch.setattr(_lifecycle, "_hold_ended", False)
    try:
        _lifecycle._at_exit()
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped the exit hook: the workers were not stopped")
    assert (first.stopped, second.stopped) == (1, 1)
    _lifecycle._after_exit()  # the hold ended: nothing more to stop
    assert (first.stopped, second.stopped) == (1, 1)


def test_ctrl_c_as_the_hold_begins_still_stops_every_worker(monkeypatch):
    # A Ctrl-C at the hold's first instruction escapes it (Python reports it as
    # ignored); the interpreter's own exit hook still stops the workers.
    from iii import _lifecycle

    held = _Held(interrupt=False)
    monkeypatch.setattr(_lifecycle, "_held", {1: held})
    monkeypatch.setattr(_lifecycle, "_hold_ended", False)
    _lifecycle._after_exit()
    assert held.stopped == 1


@pytest.mark.skipif(NO_THREADS_AFTER_MAIN, reason="no new threads after the main thread ends")
def test_a_handler_may_end_a_worker_program(iii_engine):
    proc = _start(
        iii_engine.url,
        """
        import threading

        def stop(_):
            threading.Thread(target=worker.shutdown).start()
            return "bye"

        worker.register_function("exit::stop", stop)
        """,
    )
    iii_engine.wait_for_function("exit::stop")
    with iii.register_worker(iii_engine.url) as caller:
        assert caller.trigger({"function_id": "exit::stop", "payload": None}) == "bye"
    code, _, err = _finish(proc)
    assert code == 0, err


def test_a_program_that_shuts_its_worker_down_ends(iii_engine):
    proc = _start(
        iii_engine.url,
        """
        worker.register_function("exit::f", lambda d: d)
        worker.shutdown()
        print("done", flush=True)
        """,
    )
    code, out, err = _finish(proc)
    assert code == 0, err
    assert out == "done\n"


def test_an_uncaught_exception_ends_a_worker_program(iii_engine):
    proc = _start(
        iii_engine.url,
        """
        worker.register_function("exit::f", lambda d: d)
        raise RuntimeError("boom")
        """,
    )
    code, _, err = _finish(proc)
    assert code == 1
    assert "RuntimeError: boom" in err
