"""The local Apache Kafka broker: jars from Maven Central, KRaft storage, start, readiness, stop.

Used by `centre up`, the demo, the benchmark and the tests. Production points
CENTRE_KAFKA_BOOTSTRAP at an existing cluster and never touches this module.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centre import isolated

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kafka"
_MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted or started; the message says which."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_jars(kafka_dir: Path) -> Path:
    """Fetch the broker's jars with Maven once (cached in ~/.m2), copied under kafka_dir/libs."""
    libs = kafka_dir.resolve() / "libs"  # absolute: Maven resolves paths against the POM's dir
    if (libs / _MARKER_JAR).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH: it is needed once to fetch the Kafka jars")
    tmp = libs.parent / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(DEPLOY_DIR / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    log.info("fetching Kafka %s jars with Maven", KAFKA_VERSION)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp / _MARKER_JAR).is_file():
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise BrokerError(f"Maven could not fetch the Kafka jars (exit {proc.returncode}):\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)  # atomic: a half-copied libs/ is never mistaken for a complete one
    return libs


@dataclass
class LocalBroker:
    """One single-node KRaft broker whose files all live under `kafka_dir`."""

    kafka_dir: Path
    port: int = 9092
    controller_port: int = 0
    partitions: int = 12
    heap: str = "768m"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.kafka_dir / "broker.pid"

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise BrokerError("Java 17 is needed for the local broker and `java` is not on PATH")
        return java

    def _render_config(self) -> Path:
        data_dir = self.kafka_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY_DIR / "server.properties.template").read_text()
        conf = self.kafka_dir / "server.properties"
        conf.write_text(
            template.format(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=data_dir,
                partitions=self.partitions,
            )
        )
        return conf

    def _cluster_id(self) -> str:
        f = self.kafka_dir / "cluster.id"
        if f.is_file():
            return f.read_text().strip()
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        f.write_text(cid)
        return cid

    def _classpath(self) -> str:
        return str(self.kafka_dir / "libs" / "*")

    def start(self, timeout: float = 120.0) -> None:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        ensure_jars(self.kafka_dir)
        if not self.controller_port:
            self.controller_port = free_port()
        if _port_in_use(self.port):
            raise BrokerError(
                f"port {self.port} is already in use: another broker runs there. Stop it, or set "
                "CENTRE_KAFKA_BOOTSTRAP to use it, or CENTRE_KAFKA_PORT to pick another port"
            )
        conf = self._render_config()
        java = self._java()
        logs = self.kafka_dir / "logs"
        logs.mkdir(exist_ok=True)
        fmt = subprocess.run(
            [
                java,
                "-cp",
                self._classpath(),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self._cluster_id()}",
                "-c",
                str(conf),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage failed:\n{(fmt.stdout + fmt.stderr)[-2000:]}"
            )
        cmd = [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            # C1 only: on a 2-core machine shared with the workers, C2 spent more CPU
            # compiling for minutes than its faster code saved (measured: the broker's CPU
            # per report halved at 300-1,000 reports/s).
            "-XX:TieredStopAtLevel=1",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j.configuration=file:{DEPLOY_DIR / 'log4j.properties'}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(conf),
        ]
        out = open(logs / "stdout.log", "ab")
        # A new session: Ctrl-C in the terminal reaches `centre up`, which stops the broker in order.
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.pid_file.write_text(str(self.process.pid))
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        """Ready means the broker answers a metadata request naming a broker. The question is
        asked from a child process (`centre.isolated`): the caller may be a supervisor that
        must outlive the broker, and a Kafka client it held could abort it."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"  # text only: an exception kept here would keep its client
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self.process.returncode} while starting; "
                    f"see {self.kafka_dir / 'logs' / 'server.log'}"
                )
            window = max(0.5, min(5.0, deadline - time.monotonic()))
            try:
                answer = isolated.call(broker_answers, self.bootstrap, window, timeout=window + 30)
            except (isolated.ChildDied, TimeoutError) as exc:
                answer = str(exc)
            if answer is None:
                return
            last = answer
        raise BrokerError(f"the broker did not answer within {timeout:.0f}s ({last})")

    def _stop_stale(self) -> None:
        """A broker left by a killed `centre up` holds the data dir lock: stop it by its pid."""
        if not self.pid_file.is_file():
            return
        try:
            pid = int(self.pid_file.read_text().strip())
        except ValueError:
            self.pid_file.unlink(missing_ok=True)
            return
        if _is_our_broker(pid):
            log.warning("stopping a stale local broker (pid %d)", pid)
            _terminate(pid, 30.0)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def broker_answers(bootstrap: str, seconds: float) -> str | None:
    """None once a broker at `bootstrap` answers a metadata request within `seconds`, else
    the last error as text. Run in a child process (`LocalBroker.wait_ready`)."""
    from confluent_kafka.admin import AdminClient

    # confluent-kafka's stub wants scalar values only; librdkafka's "logger" is a Logger.
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "log_level": 0,
        "logger": logging.getLogger("centre.broker.admin"),
    }
    admin = AdminClient(conf)
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic()))).brokers:
                return None
        except Exception as exc:  # KafkaException while it boots
            last = str(exc)
        time.sleep(0.2)
    return last


def _is_our_broker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
