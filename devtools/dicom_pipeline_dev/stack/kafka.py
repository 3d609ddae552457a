"""A single-node KRaft Apache Kafka broker from Maven Central jars, on Java 17."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from importlib import resources

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.layout import KAFKA_ADMIN_USER, KAFKA_CLIENT_USER, KAFKA_SASL_MECHANISM, StackLayout
from dicom_pipeline_dev.stack.prerequisites import require_java17, require_maven
from dicom_pipeline_dev.stack.process import (
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

# Clients (and the broker itself) authenticate with SASL/SCRAM-SHA-512 over TLS; the only
# other listener is the KRaft controller's, on loopback, which speaks no client protocol.
SERVER_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
  required username="{admin_user}" password="{admin_password}";
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.endpoint.identification.algorithm=https
super.users=User:{admin_user}
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
        pom = resources.files("dicom_pipeline_dev.stack") / "maven" / "pom.xml"
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

    def _ensure_tls(self) -> None:
        """A CA of the stack's own, and the broker's key and certificate (localhost, 127.0.0.1)
        signed by it, in a PKCS12 keystore; clients trust the CA (ssl.ca.location)."""
        tls = self.layout.kafka_tls_dir
        keystore = tls / "broker.p12"
        if keystore.exists() and self.layout.kafka_ca_path.exists():
            return
        tls.mkdir(parents=True, exist_ok=True)
        password = self.layout.secrets().kafka_keystore_password
        steps = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
             "/CN=dicom-pipeline local stack CA", "-keyout", "ca.key", "-out", "ca.pem"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "broker.key",
             "-out", "broker.csr"],
            ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "3650", "-out", "broker.pem", "-extfile", "san.cnf"],
            ["pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
             "-out", "broker.p12", "-passout", f"pass:{password}"],
        ]  # fmt: skip
        (tls / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for step in steps:
            result = subprocess.run(["openssl", *step], cwd=tls, capture_output=True, text=True)
            if result.returncode != 0:
                raise StackError(f"openssl {step[0]} failed for the Kafka TLS material: {result.stderr.strip()[-200:]}")
        for private in ("ca.key", "broker.key", "broker.p12"):
            (tls / private).chmod(0o600)

    def _format_storage(self) -> None:
        marker = self.data / "scram-users"
        if (self.data / "meta.properties").exists():
            if marker.exists():
                return
            # Formatted by an older stack, without the SCRAM users: local data only, start over.
            shutil.rmtree(self.data)
        cluster_id = (
            subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        secrets = self.layout.secrets()
        # KRaft stores SCRAM credentials in its metadata log: they are created at format time.
        users = [
            (KAFKA_ADMIN_USER, secrets.kafka_admin_password),
            (KAFKA_CLIENT_USER, secrets.kafka_client_password),
        ]
        scram = [
            arg
            for name, password in users
            for arg in ("--add-scram", f"{KAFKA_SASL_MECHANISM}=[name={name},password={password}]")
        ]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties), *scram),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed: {result.stderr.strip().splitlines()[-1:]}")
        (self.data / "scram-users").write_text(f"{KAFKA_SASL_MECHANISM}: {', '.join(n for n, _ in users)}\n")

    def start(self) -> None:
        ensure_port_free(self.settings.kafka_port, "Kafka", "DICOM_PIPELINE_KAFKA_PORT")
        ensure_port_free(
            self.settings.kafka_controller_port, "Kafka controller", "DICOM_PIPELINE_KAFKA_CONTROLLER_PORT"
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log4j.write_text(LOG4J2)
        self._ensure_tls()
        secrets = self.layout.secrets()
        self.properties.write_text(
            SERVER_PROPERTIES.format(
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data=self.data,
                admin_user=KAFKA_ADMIN_USER,
                admin_password=secrets.kafka_admin_password,
                keystore=self.layout.kafka_tls_dir / "broker.p12",
                keystore_password=secrets.kafka_keystore_password,
                ca=self.layout.kafka_ca_path,
            )
        )
        self.properties.chmod(0o600)
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
        self.wait_for_producer_ids()

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
        return AdminClient(
            {
                **self.layout.kafka_client_config(admin=True),
                "bootstrap.servers": self.layout.kafka_bootstrap_servers(),
                "socket.timeout.ms": 2000,
                "log_level": 0,
            }
        )

    def answers(self) -> bool:
        # A closed port first: librdkafka would otherwise log every refused connect.
        if not port_in_use(self.settings.kafka_port):
            return False
        try:
            metadata = self._admin().list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any client error means "not ready yet"
            return False
        return bool(metadata.brokers)

    def wait_for_producer_ids(self, timeout: float = 60) -> None:
        """Until the broker hands out producer ids. A broker fresh from its start fetches
        its first block of ids from the controller when a producer first asks, and answers
        "coordinator load in progress" meanwhile, which librdkafka reports as a warning
        ("Failed to acquire idempotence PID") in whichever process produces first. Asking
        here, once, leaves the pipeline's first producer nothing to wait for."""
        producer = Producer(
            {
                **self.layout.kafka_client_config(admin=True),
                "bootstrap.servers": self.layout.kafka_bootstrap_servers(),
                "transactional.id": "dicom-pipeline-stack-ready",
                "log_level": 0,
            }
        )
        try:
            producer.init_transactions(timeout)
        except KafkaException as exc:
            raise StackError(f"Kafka hands out no producer ids after {timeout:.0f}s: {exc}") from exc

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
        return self.pid_file.stop(timeout=30)
