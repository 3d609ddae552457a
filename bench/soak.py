"""`make soak`: a steady workload while a nemesis kills a different part every N seconds, then
a checker that compares the end state with Orthanc (nothing lost, nothing doubled).

    python -m bench.soak --minutes 30 --fault-every 30

- workload: studies by REST and by DICOM C-STORE, late instances (new versions), the same
  study sent twice, deletions of studies and of single instances, and a few bad instances
  (a SOP Instance UID with a control character: these must end as dead letters);
- nemesis: SIGKILL, in turn, of Kafka, PostgreSQL, Redis, Orthanc (each with everything it
  started, as a container dies), a run worker's pool process, a whole worker "host", the
  Dagster daemon, the webserver and the webhook. The harness starts again what it killed,
  the way compose's restart policy would; the pipeline's own processes get no other help;
- checker: for every study the database equals Orthanc (its instances, or deleted); every
  version has exactly one event id on Kafka and each study's events come in version order;
  every deletion is announced; every webhook request finished; no dead letter open but the
  bad instances'; every stored instance's file is in the raw store; no staging left.

Figures are printed and appended to bench/RESULTS.md. Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.seed.runner import lookup_study_id, orthanc_client
from dicom_pipeline_dev.seed.send import send_cstore, upload_rest
from dicom_pipeline_dev.seed.synth import SeedPlan, StudySpec, build_instances, plan_studies
from dicom_pipeline_dev.stack.control import Service, Stack
from dicom_pipeline_dev.stack.process import descendants, is_alive

from bench.common import record
from dicom_pipeline.db.ingestion_requests import DELETION_TRIGGER
from dicom_pipeline.ingestion.batch import BatchReport, ingest_studies
from dicom_pipeline.ingestion.reconcile import StaleStudy, find_stale_studies
from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings, get_settings
from tests.e2e.system import System, running_system
from tests.helpers import KafkaMessage, KafkaTap, clear_change_log, query

FAULT_KINDS = (
    "kafka",
    "postgres",
    "redis",
    "orthanc",
    "worker-process",
    "worker-host",
    "daemon",
    "webserver",
    "webhook",
)
SERVICE_FAULTS = ("kafka", "postgres", "redis", "orthanc")
RESTART_AFTER_SECONDS = 3.0  # how long a supervisor takes to notice and start it again
WORKERS = {"w1": 2, "w2": 1}


@dataclass
class Fault:
    kind: str
    at: float
    detail: str = ""


@dataclass
class Workload:
    """The studies the workload touched (by Study Instance UID) and what it did."""

    studies: dict[str, tuple[StudySpec, int]] = field(default_factory=dict)  # uid -> (spec, instance seed)
    bad: set[str] = field(default_factory=set)
    actions: Counter[str] = field(default_factory=Counter)
    failed_actions: Counter[str] = field(default_factory=Counter)
    done_at: list[float] = field(default_factory=list)  # when each action that succeeded ended


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    unannounced: list[str] = field(default_factory=list)
    false_dead_letters: list[str] = field(default_factory=list)
    stuck_requests: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    staging_left: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(dataclasses.astuple(self))

    def summary(self) -> str:
        parts = [f"{name} {len(items)}" for name, items in dataclasses.asdict(self).items() if items]
        return ", ".join(parts) or "all checks pass"


class Soak:
    def __init__(
        self,
        settings: Settings,
        system: System,
        *,
        seconds: float,
        fault_every: float,
        seed: int,
        kinds: tuple[str, ...] = FAULT_KINDS,
    ) -> None:
        self.settings = settings
        self.kinds = kinds
        self.system = system
        self.seconds = seconds
        self.fault_every = fault_every
        self.random = random.Random(seed)
        self.seed = seed
        self.stack = Stack.from_settings(settings)
        self.workload = Workload()
        self.faults: list[Fault] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the system's process table: the supervisor and the nemesis
        self.started_at = time.time()

    # -- the pipeline's own processes, restarted like compose's `restart: unless-stopped` --

    def supervise(self) -> None:
        restarts: dict[str, Callable[[], None]] = {
            "webserver": self.system.start_webserver,
            "daemon": self.system.start_daemon,
            "webhook": self.system.start_webhook,
            **{f"worker-{name}": self._worker_starter(name, n) for name, n in WORKERS.items()},
        }
        while not self.stop.is_set():
            with self.lock:
                dead = [name for name, process in self.system.processes.items() if process.poll() is not None]
                for name in dead:
                    self.system.processes.pop(name)
            for name in dead:
                time.sleep(RESTART_AFTER_SECONDS)
                with self.lock, contextlib.suppress(AssertionError):
                    restarts[name]()
            self.stop.wait(1.0)

    def _worker_starter(self, name: str, concurrency: int) -> Callable[[], None]:
        def start() -> None:
            self.system.start_worker(name, concurrency=concurrency)

        return start

    # -- the nemesis --

    def nemesis(self) -> None:
        kinds: list[str] = []
        while not self.stop.wait(self.fault_every):
            if not kinds:
                kinds = list(self.kinds)
                self.random.shuffle(kinds)
            kind = kinds.pop()
            try:
                detail = self._inflict(kind)
            except Exception as exc:  # noqa: BLE001 - the nemesis goes on; the figure says so
                detail = f"(could not inflict: {type(exc).__name__}: {exc})"
            self.faults.append(Fault(kind, time.time(), detail))
            print(f"[soak {time.time() - self.started_at:6.0f}s] fault: {kind} {detail}", flush=True)

    def _inflict(self, kind: str) -> str:
        if kind in SERVICE_FAULTS:
            service = self._service(kind)
            pid = service.running_pid()
            if pid is None:
                return "(was not running)"
            _kill_tree(pid)
            time.sleep(RESTART_AFTER_SECONDS)
            for _ in range(10):
                try:
                    service.start()
                    break
                except Exception as exc:  # noqa: BLE001 - a supervisor tries again
                    print(f"[soak] restart of {kind} failed ({exc}); again", flush=True)
                    time.sleep(2)
            return f"pid {pid}"
        if kind == "worker-process":
            with self.lock:
                main = self.system.processes.get("worker-w1")
            pool = [p for p in descendants(main.pid) if _cmdline(p).find("worker") >= 0] if main else []
            if not pool:
                return "(no pool process)"
            victim = self.random.choice(pool)
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
            return f"pid {victim}"
        name = {"worker-host": "worker-w1"}.get(kind, kind)
        with self.lock:
            process = self.system.processes.get(name)
        if process is None:
            return "(was not running)"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return f"pgid {process.pid}"

    def _service(self, kind: str) -> Service:
        name = {"postgres": "postgresql"}.get(kind, kind)
        return next(s for s in self.stack.services if s.name == name)

    # -- the workload --

    def run_workload(self) -> None:
        actions: dict[str, tuple[int, Callable[[], None]]] = {
            "rest": (30, self._new_study_rest),
            "cstore": (15, self._new_study_cstore),
            "late instances": (15, self._late_instances),
            "sent again": (10, self._sent_again),
            "delete study": (6, self._delete_study),
            "delete instance": (6, self._delete_instance),
            "bad instance": (3, self._bad_instance),
        }
        names = list(actions)
        weights = [actions[n][0] for n in names]
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            name = self.random.choices(names, weights)[0]
            if name not in ("rest", "cstore") and not self.workload.studies:
                name = "rest"
            try:
                actions[name][1]()
                self.workload.actions[name] += 1
                self.workload.done_at.append(time.time())
            except Exception:  # noqa: BLE001 - Orthanc may be down: a modality tries again later
                self.workload.failed_actions[name] += 1
            time.sleep(self.random.uniform(0.5, 2.0))

    def _spec(self, instances: int) -> tuple[StudySpec, int]:
        seed = self.random.randrange(1 << 30)
        modality = self.random.choice(("CT", "MR", "CR", "DX"))
        plan = SeedPlan(
            studies=1, modalities=(modality,), series_per_study=1, instances_per_series=instances, rows=16, columns=16
        )
        return plan_studies(dataclasses.replace(plan, seed=seed))[0], seed

    def _new_study_rest(self) -> None:
        spec, seed = self._spec(self.random.randint(1, 3))
        self.workload.studies[spec.study_uid] = (spec, seed)
        with orthanc_client(self.settings) as client:
            upload_rest(client, build_instances(spec, seed))

    def _new_study_cstore(self) -> None:
        spec, seed = self._spec(self.random.randint(1, 3))
        self.workload.studies[spec.study_uid] = (spec, seed)
        send_cstore("127.0.0.1", self.settings.orthanc_dicom_port, build_instances(spec, seed))

    def _pick(self) -> tuple[str, StudySpec, int]:
        uid = self.random.choice(sorted(set(self.workload.studies) - self.workload.bad))
        spec, seed = self.workload.studies[uid]
        return uid, spec, seed

    def _late_instances(self) -> None:
        uid, spec, seed = self._pick()
        bigger = dataclasses.replace(spec, instances_per_series=spec.instances_per_series + 1)
        self.workload.studies[uid] = (bigger, seed)
        with orthanc_client(self.settings) as client:
            upload_rest(client, build_instances(bigger, seed))

    def _sent_again(self) -> None:
        _uid, spec, seed = self._pick()
        with orthanc_client(self.settings) as client:
            upload_rest(client, build_instances(spec, seed))

    def _delete_study(self) -> None:
        uid, _spec, _seed = self._pick()
        with orthanc_client(self.settings) as client:
            client.delete(f"/studies/{lookup_study_id(client, uid)}").raise_for_status()

    def _delete_instance(self) -> None:
        uid, _spec, _seed = self._pick()
        with orthanc_client(self.settings) as client:
            instances = client.get(f"/studies/{lookup_study_id(client, uid)}/instances").json()
            if len(instances) > 1:
                client.delete(f"/instances/{instances[0]['ID']}").raise_for_status()

    def _bad_instance(self) -> None:
        spec, seed = self._spec(2)
        datasets = list(build_instances(spec, seed))
        datasets[0].SOPInstanceUID = datasets[0].SOPInstanceUID + "\x01"
        self.workload.studies[spec.study_uid] = (spec, seed)
        self.workload.bad.add(spec.study_uid)
        with orthanc_client(self.settings) as client:
            upload_rest(client, datasets)

    # -- the checker --

    def check(self, events: list[KafkaMessage]) -> Verdict:
        verdict = Verdict()
        uids = sorted(self.workload.studies)
        with orthanc_client(self.settings) as client:
            in_orthanc = {uid: _orthanc_sop_uids(client, uid) for uid in uids}
        by_study: dict[str, list[tuple[int, str, str]]] = {}
        for message in events:
            study = message.value.get("study") or {}
            by_study.setdefault(message.key, []).append(
                (int(study.get("version", 0)), str(message.value.get("event_id")), str(message.value.get("event_type")))
            )
        for uid in uids:
            rows = query(
                "SELECT s.deleted_at IS NOT NULL, array_remove(array_agg(i.sop_instance_uid), NULL) FROM study s "
                "LEFT JOIN instance i ON i.study_id = s.id WHERE s.study_instance_uid = :uid GROUP BY s.id",
                uid=uid,
            )
            deleted, stored = (rows[0][0], set(rows[0][1])) if rows else (None, set())
            orthanc = in_orthanc[uid]
            if uid in self.workload.bad:
                if stored:
                    verdict.lost.append(f"{uid}: bad study has rows")
                continue
            if orthanc and stored != orthanc:
                verdict.lost.append(f"{uid}: Orthanc {len(orthanc)} instances, database {len(stored)}")
            if not orthanc and rows and not deleted:
                verdict.lost.append(f"{uid}: gone from Orthanc, current in the database")
            versions = query(
                "SELECT v.version, v.event_id::text, v.deleted FROM study_version v JOIN study s ON s.id = v.study_id "
                "WHERE s.study_instance_uid = :uid ORDER BY v.version",
                uid=uid,
            )
            seen = by_study.get(uid, [])
            ids_per_version: dict[int, set[str]] = {}
            for version, event_id, _type in seen:
                ids_per_version.setdefault(version, set()).add(event_id)
            if any(len(ids) > 1 for ids in ids_per_version.values()):
                verdict.doubled.append(uid)
            # Consumers deduplicate by event id: what must be in order is each id's first arrival.
            first: dict[str, int] = {}
            for version, event_id, _type in seen:
                first.setdefault(event_id, version)
            order = list(first.values())
            if order != sorted(order):
                verdict.out_of_order.append(f"{uid}: {order}")
            for version, event_id, was_deletion in versions:
                if event_id and event_id not in ids_per_version.get(version, set()):
                    verdict.unannounced.append(f"{uid} v{version}{' (deletion)' if was_deletion else ''}")
        # Open letters of the studies this soak touched (a full reconciliation may also meet
        # bad studies older runs left in Orthanc: theirs are not counted).
        for uid, run_id in query(
            "SELECT study_instance_uid, run_id FROM dead_letter WHERE resolved_at IS NULL "
            "AND study_instance_uid = ANY(:uids)",
            uids=uids,
        ):
            if uid not in self.workload.bad:
                verdict.false_dead_letters.append(f"{uid} (run {run_id})")
        verdict.stuck_requests = [
            str(r[0])
            for r in query(
                "SELECT id FROM ingestion_request WHERE status NOT IN ('succeeded', 'failed') "
                "AND created_at >= to_timestamp(:since)",
                since=self.started_at,
            )
        ]
        store = Path(self.settings.storage_url.removeprefix("file://"))
        for key, size in query(
            "SELECT i.storage_key, i.size_bytes FROM instance i JOIN study s ON s.id = i.study_id "
            "WHERE s.study_instance_uid = ANY(:uids)",
            uids=uids,
        ):
            path = store / key
            if not path.exists() or path.stat().st_size != size:
                verdict.missing_files.append(key)
        for name in WORKERS:
            scratch = self.system.home / f"scratch-{name}"
            verdict.staging_left += [str(p) for p in scratch.glob("*")] if scratch.exists() else []
        return verdict


def _orthanc_sop_uids(client: object, study_uid: str) -> set[str]:

    assert isinstance(client, ServiceSession)
    found = client.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).json()
    sops: set[str] = set()
    for orthanc_id in found:
        for instance in client.get(f"/studies/{orthanc_id}/instances").json():
            sops.add(str((instance.get("MainDicomTags") or {}).get("SOPInstanceUID", "")))
    return sops


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill_tree(pid: int) -> None:
    """As a container dies: the process and everything it started, at once."""
    for victim in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _read_since(settings: Settings, start: list[TopicPartition], timeout: float = 120.0) -> list[KafkaMessage]:
    """Every message from the offsets the soak began at to the topic's end now, with a
    consumer of its own: one kept open across broker kills is what the checker must not
    depend on."""
    consumer = Consumer(
        {
            **kafka_client_config(settings),
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"soak-checker-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in start}
        todo = {tp.partition for tp in start if ends[tp.partition] > tp.offset}
        consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset) for tp in start])
        found: list[KafkaMessage] = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            found.append(
                KafkaMessage(
                    key=bytes(message.key() or b"").decode(),
                    value=json.loads(bytes(message.value() or b"{}")),
                    headers={},
                )
            )
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                todo.discard(partition)
        return found
    finally:
        consumer.close()


@dataclass
class SoakResult:
    rows: list[tuple[str, str]]
    verdict: Verdict
    converged_after: float | None
    faults: list[Fault]
    workload: Workload

    def faults_amid_work(self, window: float) -> list[Fault]:
        """The faults with work of the workload's done both in the `window` seconds before
        and in those after: faults that hit a system busy with studies, not a quiet one."""
        return [
            fault
            for fault in self.faults
            if any(fault.at - window <= at < fault.at for at in self.workload.done_at)
            and any(fault.at < at <= fault.at + window for at in self.workload.done_at)
        ]


def reconcile_what_orthanc_holds() -> None:
    """The soak starts from a reconciled system, as a site that has been running is: every
    study Orthanc already holds (another test's, an earlier soak's) recorded, or refused
    with a dead letter. A study nobody ever ingested (a test that only uploaded it) would
    make Orthanc's totals exceed the database's for the whole soak, so a deletion whose
    notice a fault lost would count as one arrivals may hide, looked for only every
    RECONCILE_DELETION_CHECK_SECONDS (ingestion/deletion_check.py): what a site is in only
    until its nightly full reconciliation."""
    stale, report = full_reconciliation()
    if stale:
        print(f"[soak] reconciled what Orthanc held before: {len(stale)} stud(ies), {report.as_dict()}", flush=True)


def full_reconciliation() -> tuple[list[StaleStudy], BatchReport]:
    """What a `reconcile` run with `full: true` does (the nightly_full_reconcile schedule's),
    in this process: a full scan, then each stale study ingested."""
    runtime = get_runtime()
    stale = find_stale_studies(runtime)
    return stale, ingest_studies(runtime, [s.orthanc_id for s in stale], trigger="reconcile", run_id=None)


def nightly_full_reconciliation(after: float) -> str:
    """What the nightly_full_reconcile schedule runs (full_reconciliation), once, for a soak
    that cannot wait for the night. The per-pass and periodic
    deletion looks compare totals; a lost deletion whose difference another study's offsets
    (Orthanc holding an instance the database neither records nor counts as refused) leaves
    the totals equal, and only this scan finds it (docs/reliability.md, open limitations).
    Says what it found: the soak's figures show whether the end state needed it."""
    try:
        stale, report = full_reconciliation()
    except Exception as exc:  # noqa: BLE001 - a service still coming back: the next check tells
        return f"failed at {after:.0f} s after the last fault: {type(exc).__name__}"
    found = ", ".join(f"{s.orthanc_id} ({s.reason})" for s in stale) or "nothing"
    print(
        f"[soak] nightly full reconciliation {after:.0f}s after the last fault: found {found}; {report.as_dict()}",
        flush=True,
    )
    return f"run {after:.0f} s after the last fault, found {len(stale)}: {found}"[:400]


def empty_orthanc_and_record_it(settings: Settings) -> None:
    """For a soak on a shared stack (the test suite's): every study Orthanc holds deleted,
    and each deletion recorded by the pipeline before the soak starts, so Orthanc and the
    database start equal. Another test's study that the pipeline cannot record (two Orthanc
    studies of one Study Instance UID, one left failing) keeps Orthanc's totals above the
    database's for the whole soak and hides a deletion whose notice a fault loses
    (docs/reliability.md, open limitations); a running site is not made of such leftovers."""
    with orthanc_client(settings) as client:
        ids = [str(oid) for oid in client.get("/studies").json()]
        for orthanc_id in ids:
            client.delete(f"/studies/{orthanc_id}").raise_for_status()
    if ids:
        report = ingest_studies(get_runtime(), ids, trigger=DELETION_TRIGGER, run_id=None)
        print(f"[soak] emptied Orthanc first: {len(ids)} stud(ies), {report.as_dict()}", flush=True)


def run_soak(
    settings: Settings,
    seconds: float,
    fault_every: float,
    *,
    seed: int,
    converge_timeout: float = 600.0,
    kinds: tuple[str, ...] = FAULT_KINDS,
    deletion_check_seconds: float | None = None,
    empty_orthanc_first: bool = False,
    nightly_after: float | None = None,
) -> SoakResult:
    """`deletion_check_seconds`: RECONCILE_DELETION_CHECK_SECONDS of the soaked system (the
    setting's own default, 600 s, when None). `empty_orthanc_first`: see
    empty_orthanc_and_record_it (never for `make soak`: it deletes every study).
    `nightly_after`: if the end state still differs that many seconds after the last fault,
    the nightly full reconciliation runs once (see nightly_full_reconciliation)."""
    if empty_orthanc_first:
        empty_orthanc_and_record_it(settings)
    reconcile_what_orthanc_holds()
    clear_change_log(settings)
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=True) as system:
        # As in production: the periodic reconciliation is the net under lost announcements.
        system.env["DICOM_PIPELINE_RECONCILE_SCHEDULE"] = "true"
        if deletion_check_seconds is not None:
            system.env["DICOM_PIPELINE_RECONCILE_DELETION_CHECK_SECONDS"] = str(deletion_check_seconds)
        system.start_dagster(workers=0)
        for name, concurrency in WORKERS.items():
            system.start_worker(name, concurrency=concurrency)
        system.start_webhook()
        tap = KafkaTap(settings, settings.kafka_topic)
        soak = Soak(settings, system, seconds=seconds, fault_every=fault_every, seed=seed, kinds=kinds)
        threads = [
            threading.Thread(target=soak.supervise, daemon=True),
            threading.Thread(target=soak.nemesis, daemon=True),
        ]
        for thread in threads:
            thread.start()
        soak.run_workload()
        soak.stop.set()
        threads[1].join()  # the nemesis finishes its fault (a service it killed is started again)
        threads[0].join()
        last_fault = soak.faults[-1].at if soak.faults else time.time()
        # The supervisor is stopped: anything the last faults left dead is started once more.
        for name, process in list(system.processes.items()):
            if process.poll() is not None:
                system.processes.pop(name)
        with contextlib.suppress(AssertionError):
            system.ensure(dagster=True, webhook=True)
        for name, concurrency in WORKERS.items():
            if f"worker-{name}" not in system.processes:
                system.start_worker(name, concurrency=concurrency)
        events: list[KafkaMessage] = []
        start = list(tap.start)
        tap.close()
        verdict = Verdict()
        converged_after: float | None = None
        nightly: str | None = None  # what the nightly full reconciliation found, once it ran
        deadline = time.monotonic() + converge_timeout
        while time.monotonic() < deadline:
            if nightly_after is not None and nightly is None and time.time() - last_fault >= nightly_after:
                nightly = nightly_full_reconciliation(time.time() - last_fault)
            try:
                events = _read_since(settings, start)
                verdict = soak.check(events)
            except Exception as exc:  # noqa: BLE001 - a service still coming back
                print(f"[soak] check failed to run: {exc}", flush=True)
                time.sleep(5)
                continue
            print(
                f"[soak] check {time.time() - last_fault:5.0f}s after the last fault: {verdict.summary()}", flush=True
            )
            if verdict.passed:
                converged_after = time.time() - last_fault
                break
            time.sleep(10)
    faults = Counter(f.kind for f in soak.faults)
    rows = [
        (
            "soak",
            f"{seconds / 60:.1f} min of workload, a fault every {fault_every:.0f} s, seed {seed}",
        ),
        ("studies touched (bad instances among them)", f"{len(soak.workload.studies)} ({len(soak.workload.bad)})"),
        (
            "workload actions (failed while a service was down)",
            _counts(soak.workload.actions, soak.workload.failed_actions),
        ),
        ("events read from dicom.metadata.v1", str(len(events))),
        ("faults by kind", ", ".join(f"{k} {faults[k]}" for k in FAULT_KINDS if faults[k]) or "none"),
        ("studies lost (database differs from Orthanc)", str(len(verdict.lost))),
        ("versions with two event ids", str(len(verdict.doubled))),
        ("studies with events out of version order", str(len(verdict.out_of_order))),
        ("versions (deletions included) never announced", str(len(verdict.unannounced))),
        ("false dead letters (open, not a bad instance's)", str(len(verdict.false_dead_letters))),
        ("webhook requests left unfinished", str(len(verdict.stuck_requests))),
        ("stored instances without their file", str(len(verdict.missing_files))),
        ("staging folders left", str(len(verdict.staging_left))),
        (
            "converged after the last fault",
            f"{converged_after:.0f} s" if converged_after is not None else f"not within {converge_timeout:.0f} s",
        ),
        ("nightly full reconciliation", nightly or "not run"),
    ]
    for name, items in dataclasses.asdict(verdict).items():
        for item in items[:5]:
            print(f"[soak] {name}: {item}", flush=True)
    return SoakResult(rows, verdict, converged_after, soak.faults, soak.workload)


def _counts(done: Counter[str], failed: Counter[str]) -> str:
    return ", ".join(
        f"{name} {done[name]}" + (f" ({failed[name]})" if failed[name] else "") for name in sorted(done | failed)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--converge-timeout", type=float, default=600.0, help="seconds")
    parser.add_argument(
        "--faults", default=",".join(FAULT_KINDS), help="comma-separated kinds, taken in turn (default: %(default)s)"
    )
    args = parser.parse_args()
    kinds = tuple(kind.strip() for kind in args.faults.split(",") if kind.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        parser.error(f"unknown fault kind(s) {unknown}; choose from {', '.join(FAULT_KINDS)}")
    result = run_soak(
        get_settings(),
        args.minutes * 60,
        args.fault_every,
        seed=args.seed,
        converge_timeout=args.converge_timeout,
        kinds=kinds,
    )
    for name, value in result.rows:
        print(f"{name}: {value}")
    command = f"python -m bench.soak --minutes {args.minutes:g} --fault-every {args.fault_every:g} --seed {args.seed}"
    if kinds != FAULT_KINDS:
        command += f" --faults {','.join(kinds)}"
    notes = [f"command: `{command}`"]
    print(record("soak", result.rows, notes))
    raise SystemExit(0 if result.verdict.passed and result.converged_after is not None else 1)


if __name__ == "__main__":
    main()
