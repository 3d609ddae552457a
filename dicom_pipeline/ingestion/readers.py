"""Instance readers: processes that download, hash, stage and parse instances for the runs of
the process that owns them, started once and kept warm.

pydicom is pure Python, so a run process that parses holds the GIL and uses one core,
however many download threads it has (threads measured no faster than one thread, with
more CPU: bench/RESULTS.md, 2026-11-29). Readers are whole processes: each takes one
instance at a time (download, sha256, write to the run's staging folder, parse the
header) and answers with the parsed record, so a study uses as many cores as readers,
with at most that many files in flight.

Runs execute inside Celery's prefork pool processes, which are daemonic, and the standard
library refuses daemonic processes children (so that none outlives a parent terminated
without joining it). That reason is answered here instead: a reader ignores Ctrl-C (its
owner decides when it stops) and ends as soon as its owner is gone, however it went
(killed, recycled by Celery, crashed: a pipe only the owner holds open closes); so the
rule is lifted for the moment the readers start, and only then (`_children_allowed`).

Like any multiprocessing program, a script that embeds the pipeline must guard its main
module (`if __name__ == "__main__":`): readers import it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import AuthenticationString  # type: ignore[attr-defined]
from pathlib import Path

from dicom_pipeline.errors import TransientError
from dicom_pipeline.ingestion.download import ParsedDownload, download_and_parse
from dicom_pipeline.logs import bound_correlation_id, configure_logging, correlation_id_var
from dicom_pipeline.orthanc.client import OrthancClient, OrthancInstance
from dicom_pipeline.settings import Settings

log = logging.getLogger(__name__)


class ReaderLost(TransientError):
    """A reader process died (killed, out of memory) with work in flight."""


class InstanceReaders:
    """`settings.reader_processes` reader processes, started on first use; `submit` is
    thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.processes = settings.reader_processes
        self._settings = settings
        self._executor: ProcessPoolExecutor | None = None
        self._lifeline: Connection | None = None
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        """Start the readers now (else the first `submit` does)."""
        if self._executor is None:
            self._start()

    def pids(self) -> list[int]:
        """The reader processes' ids (for operators and tests); empty until started."""
        executor = self._executor
        return sorted(executor._processes or {}) if executor is not None else []

    def read_study(
        self, instances: list[OrthancInstance], staging: Path, study_uid: str
    ) -> list[Future[ParsedDownload]]:
        """Queue every instance of one study at once, behind the studies queued before it.
        Readers take work first come, first served, so studies read side by side (a
        backfill) finish one after another, and one study's storing and persisting overlaps
        the next one's reading instead of all of them waiting for the same last files."""
        with self._queue_lock:
            return [self.submit(instance, staging, study_uid) for instance in instances]

    def submit(self, instance: OrthancInstance, staging: Path, study_uid: str) -> Future[ParsedDownload]:
        """`download_and_parse` of one instance in a reader. A reader's death fails the
        instances in flight with ReaderLost (transient: the retry policy reads the study
        again, with readers started afresh); cancelling the answer cancels the work."""
        executor = self._executor or self._start()
        answer: Future[ParsedDownload] = Future()
        try:
            work = executor.submit(_read, instance, staging, study_uid, correlation_id_var.get())
        except (BrokenProcessPool, RuntimeError) as exc:
            # Broken, or shut down by another thread that saw a reader die a moment ago.
            self._discard(executor)
            raise ReaderLost("a reader process died; readers restarted for the next attempt") from exc
        work.add_done_callback(lambda done: self._answer(executor, done, answer))
        answer.add_done_callback(lambda done: done.cancelled() and work.cancel())
        return answer

    def _answer(
        self, executor: ProcessPoolExecutor, work: Future[ParsedDownload], answer: Future[ParsedDownload]
    ) -> None:
        """Hand the work's outcome to the answer, once the work is over. A cancelled answer
        becomes done (for `wait`) only now, so no reader still writes for it afterwards."""
        error: BaseException | None
        if work.cancelled():  # dropped with a discarded pool, not by the answer's caller
            error = ReaderLost("the readers were restarted before this instance was read")
        else:
            error = work.exception()
            if isinstance(error, BrokenProcessPool):
                self._discard(executor)
                error = ReaderLost("a reader process died with this instance in flight; readers restarted")
        try:
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(work.result())
        except InvalidStateError:  # the caller cancelled the answer: done, now that its work is
            answer.set_running_or_notify_cancel()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._lifeline is not None:
            self._lifeline.close()

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                started = time.perf_counter()
                context = _context()
                # Readers wait on this pipe's other end: it closes only when this process
                # ends (it never writes), however it ends.
                lifeline, self._lifeline = context.Pipe(duplex=False)
                executor = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=context,
                    initializer=_reader_started,
                    initargs=(self._settings, lifeline),
                )
                with _children_allowed():
                    # Every reader now, while children are allowed: the executor starts one
                    # per submit that finds none idle, and never another while they live.
                    for warm in [executor.submit(os.getpid) for _ in range(self.processes)]:
                        warm.result()
                log.info(
                    "instance readers started",
                    extra={"processes": self.processes, "seconds": round(time.perf_counter() - started, 2)},
                )
                self._executor = executor
            return self._executor

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)


def _context() -> multiprocessing.context.BaseContext:
    """Readers are forked by a fork server that imported the ingestion code once (a reader
    is up in milliseconds), never forked from the owner, whose threads (downloads,
    heartbeats, Kafka's) may hold locks a child would inherit held."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dicom_pipeline.ingestion.download", "dicom_pipeline.orthanc.client"])
    return context


@contextmanager
def _children_allowed() -> Iterator[None]:
    """Let this process start readers with the standard library's multiprocessing, also
    when it is one of Celery's pool processes. billiard (Celery's fork of multiprocessing)
    registers those as the library's current process: daemonic, which the library refuses
    children (the module's docstring says why that is safe here), and holding billiard's
    kind of authentication key, which the library refuses to pickle into a child's start-up
    data. While the readers start, the process shows the library a non-daemonic process
    with the same key; `_config` is where the library keeps both."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    saved = dict(config)
    config["daemon"] = False
    if "authkey" in config:
        config["authkey"] = AuthenticationString(bytes(config["authkey"]))
    try:
        yield
    finally:
        config.clear()
        config.update(saved)


# The reader process's own Orthanc client (connections kept alive between instances).
_orthanc: OrthancClient | None = None


def _reader_started(settings: Settings, lifeline: Connection) -> None:
    """In each reader: an Orthanc client; Ctrl-C left to the owner; an end when the owner's
    end of the lifeline closes (the owner is gone)."""
    global _orthanc
    configure_logging(settings.log_level, settings.log_format)
    _orthanc = OrthancClient.from_settings(settings)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_with_owner, args=(lifeline,), name="owner-watch", daemon=True).start()


def _end_with_owner(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()  # the owner never writes: this returns when its end closes
    os._exit(0)  # nobody is left to read an answer


def _read(instance: OrthancInstance, staging: Path, study_uid: str, correlation_id: str | None) -> ParsedDownload:
    assert _orthanc is not None, "reader not initialised"
    with bound_correlation_id(correlation_id):
        return download_and_parse(_orthanc, instance, staging, study_uid)
