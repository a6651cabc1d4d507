"""The ``claiim`` command exits without tearing the interpreter down, but still does what an exit must: its exit
code is main's, other threads finish, atexit functions run, and a standard output that cannot be written makes the
exit code 120, as Python's own exit does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = "import sys; from claiim_server.cli.main import run; sys.argv = ['claiim', *sys.argv[1:]]; {before}; run()"


def claiim(*args: str, before: str = "pass") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN.format(before=before), *args], capture_output=True, text=True,
                          timeout=60)


def test_the_exit_code_and_output_are_mains() -> None:
    done = claiim("--version")
    assert done.returncode == 0 and done.stdout.startswith("claiim-server "), done
    done = claiim("no-such-command")
    assert done.returncode == 2 and "invalid choice: 'no-such-command'" in done.stderr, done


def test_atexit_functions_run_and_threads_finish(tmp_path: Path) -> None:
    mark = tmp_path / "thread-done"
    before = ("import atexit, threading, time; atexit.register(print, 'atexit ran'); "
              f"threading.Thread(target=lambda: (time.sleep(0.5), open({str(mark)!r}, 'w').close())).start()")
    done = claiim("--version", before=before)
    assert done.returncode == 0 and done.stdout.endswith("atexit ran\n"), done
    assert mark.exists()


def test_an_output_that_cannot_be_written_is_exit_code_120() -> None:
    done = claiim(before="sys.stdout = open('/dev/full', 'w'); import claiim_server.cli.main as m; "
                         "m.main = lambda: print('still buffered')")
    assert done.returncode == 120, done


def test_an_exit_message_is_printed_and_exit_code_1() -> None:
    done = claiim(before="import claiim_server.cli.main as m; m.main = lambda: sys.exit('the message')")
    assert (done.returncode, done.stderr) == (1, "the message\n"), done
