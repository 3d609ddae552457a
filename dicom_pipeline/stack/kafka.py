"""A single-node KRaft Apache Kafka broker from Maven Central jars, on Java 17."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from importlib import resources

from confluent_kafka.admin import AdminClient, NewTopic

from dicom_pipeline.stack.errors import StackError
from dicom_pipeline.stack.layout import StackLayout
from dicom_pipeline.stack.prerequisites import require_java17, require_maven
from dicom_pipeline.stack.process import (
    PidFile,
    ensure_port_free,
    port_in_use,
    start_detached,
    stop_pid,
    wait_until,
)

LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
"""

SERVER_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=16777216
"""


class KafkaService:
    name = "kafka"

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.settings = layout.settings
        self.dir = layout.root / "kafka"
        self.lib = self.dir / "lib"
        self.data = self.dir / "data"
        self.properties = self.dir / "server.properties"
        self.log4j = self.dir / "log4j2.properties"
        self.log = self.dir / "kafka.log"
        self.pid_file = PidFile(self.dir / "kafka.pid", "kafka.Kafka")

    def install(self) -> None:
        """Copy the broker jars from Maven (cached in ~/.m2) unless they are already here."""
        if any(self.lib.glob("kafka_2.13-*.jar")):
            return
        require_java17()
        mvn = require_maven()
        self.lib.mkdir(parents=True, exist_ok=True)
        pom = resources.files("dicom_pipeline.stack") / "maven" / "pom.xml"
        with resources.as_file(pom) as pom_path:
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom_path),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={self.lib}",
                ],
                capture_output=True,
                text=True,
            )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
            raise StackError(f"Maven could not fetch the Kafka jars: {' / '.join(tail)}")

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def _java(self, *args: str) -> list[str]:
        return [require_java17(), f"-Dlog4j2.configurationFile={self.log4j}", "-cp", f"{self.lib}/*", *args]

    def _format_storage(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        cluster_id = (
            subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties)),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed: {result.stderr.strip().splitlines()[-1:]}")

    def start(self) -> None:
        ensure_port_free(self.settings.kafka_port, "Kafka", "DICOM_PIPELINE_KAFKA_PORT")
        ensure_port_free(
            self.settings.kafka_controller_port, "Kafka controller", "DICOM_PIPELINE_KAFKA_CONTROLLER_PORT"
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log4j.write_text(LOG4J2)
        self.properties.write_text(
            SERVER_PROPERTIES.format(
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data=self.data,
            )
        )
        self._format_storage()
        try:
            self._launch()
        except StackError as first:
            # One broker start on a fresh CI machine exited at once with an empty log, and
            # the same commit started fine on every other run: try once more, and keep
            # the first failure visible in case the second one fails too.
            print(f"kafka: first start failed, starting once more: {first}", file=sys.stderr)
            self._launch()
        self.create_topics()

    def _launch(self) -> None:
        argv = self._java("kafka.Kafka", str(self.properties))
        argv[1:1] = ["-Xms256m", "-Xmx512m"]
        process = start_detached(argv, self.pid_file, self.log, cwd=self.dir)
        try:
            wait_until(self.answers, "Kafka", 120, self.log, process)
        except StackError:
            if process.poll() is None:
                # A JVM that is alive but silent: SIGQUIT makes it print every thread's
                # stack into its log, which is what tells a hang's cause, then stop it.
                process.send_signal(signal.SIGQUIT)
                time.sleep(1)
                stop_pid(process.pid, timeout=10)
            raise

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.layout.kafka_bootstrap_servers(), "socket.timeout.ms": 2000})

    def answers(self) -> bool:
        # A closed port first: librdkafka would otherwise log every refused connect.
        if not port_in_use(self.settings.kafka_port):
            return False
        try:
            metadata = self._admin().list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any client error means "not ready yet"
            return False
        return bool(metadata.brokers)

    def create_topics(self) -> None:
        admin = self._admin()
        existing = set(admin.list_topics(timeout=10).topics)
        wanted = [t for t in (self.settings.kafka_topic, self.settings.kafka_dlq_topic) if t not in existing]
        if not wanted:
            return
        futures = admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in wanted])
        for topic, future in futures.items():
            try:
                future.result(timeout=30)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise StackError(f"could not create Kafka topic {topic}: {exc}") from exc

    def stop(self) -> bool:
        pid = self.running_pid()
        if pid is None:
            return False
        stop_pid(pid, timeout=30)
        return True
