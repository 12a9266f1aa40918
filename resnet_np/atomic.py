"""Writing a file so that a crash never leaves half of it under the real name.

The bytes go to a temporary file in the same folder, are flushed to disk,
and only then is the temporary file renamed onto the target: ``os.replace``
is atomic within one file system, so a reader sees either the old complete
file or the new complete file, never a truncated one.

Ctrl-C (SIGINT) and SIGTERM that arrive during the write are held until it
is done and then delivered (``signals_deferred``): a write a user
interrupts still finishes, so "the checkpoint is saved" is true the moment
the interrupt is acted on. (SIGKILL cannot be held: the temporary file then
stays behind, and the previous file is intact.)
"""

import contextlib
import os
import signal
import tempfile
import threading

# The signals a user or a job scheduler sends to stop a run; held during a write, then delivered.
DEFERRED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))

_holding = threading.local()


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM while the block runs, then deliver them to the handlers they would have had.

    Only the main thread receives signals in Python, so elsewhere (and inside
    an enclosing ``signals_deferred``) this does nothing. A signal received
    while held is raised again with ``signal.raise_signal`` once the old
    handlers are back: Ctrl-C then raises ``KeyboardInterrupt`` at the end
    of the block, and SIGTERM ends the process as it would have.
    """
    if threading.current_thread() is not threading.main_thread() or getattr(_holding, "active", False):
        yield
        return
    received, previous = [], {}

    def hold(signum, frame):
        received.append(signum)

    try:
        for sig in DEFERRED_SIGNALS:
            if signal.getsignal(sig) is not None:  # None: a handler not set from Python, which cannot be restored
                previous[sig] = signal.signal(sig, hold)
        _holding.active = True
        yield
    finally:
        _holding.active = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def _default_file_mode():
    """0o666 minus the umask: the mode ``open()`` would give a new file.

    ``tempfile`` creates its files readable by their owner only (0o600);
    a checkpoint should get the same permissions as any other file.
    """
    umask = os.umask(0)  # the only way to read the umask is to set it...
    os.umask(umask)      # ...and put it back
    return 0o666 & ~umask


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX only: Windows cannot open a folder)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, write):
    """Call ``write(fileobj)`` on a temporary file, then rename it onto ``path``.

    The temporary file lives in the same folder as ``path`` because
    ``os.replace`` is atomic only within one file system. On any error
    the temporary file is removed and ``path`` is left untouched; SIGINT
    and SIGTERM wait until the write is complete (``signals_deferred``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    with signals_deferred():  # Ctrl-C or SIGTERM now: the write finishes, then the signal acts
        tmp = tempfile.NamedTemporaryFile(dir=folder, prefix="." + os.path.basename(path) + ".",
                                          suffix=".tmp", delete=False)
        try:
            with tmp:
                write(tmp)
                tmp.flush()
                os.fsync(tmp.fileno())  # the bytes are on disk before the name points at them
            mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else _default_file_mode()
            os.chmod(tmp.name, mode)
            os.replace(tmp.name, path)
        except BaseException:
            try:
                os.remove(tmp.name)
            except FileNotFoundError:
                pass
            raise
        _fsync_folder(folder)


