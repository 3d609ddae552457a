"""Redis: the Celery broker and result backend of the run workers (loopback, password, AOF)."""

from __future__ import annotations

import shutil
import subprocess

from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.layout import StackLayout
from dicom_pipeline_dev.stack.prerequisites import ensure_debian_package
from dicom_pipeline_dev.stack.process import PidFile, ensure_port_free, start_detached, wait_until


class RedisService:
    name = "redis"

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.port = layout.settings.redis_port
        self.dir = layout.root / "redis"
        self.config_path = self.dir / "redis.conf"
        self.log = self.dir / "redis.log"
        self.pid_file = PidFile(self.dir / "redis.pid", "redis-server")

    def install(self) -> None:
        ensure_debian_package("redis-server", shutil.which("redis-server") is not None)

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # The password goes into a mode-600 file, not onto the command line (ps shows argv).
        config = "\n".join(
            [
                "bind 127.0.0.1",
                f"port {self.port}",
                f"requirepass {self.layout.secrets().redis_password}",
                f"dir {self.dir}",
                # Append-only file, fsync every second: a queued run survives a broker restart.
                "appendonly yes",
                "appendfsync everysec",
                "save ''",
                "daemonize no",
                "protected-mode yes",
                "",
            ]
        )
        self.config_path.write_text(config)
        self.config_path.chmod(0o600)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("Redis is not installed; run: apt-get install -y redis-server")
        ensure_port_free(self.port, "Redis", "DICOM_PIPELINE_REDIS_PORT")
        self.configure()
        process = start_detached([binary, str(self.config_path)], self.pid_file, self.log, cwd=self.dir)
        wait_until(self.answers, "Redis", 30, self.log, process)

    def answers(self) -> bool:
        try:
            result = subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning", "ping"],
                env={"REDISCLI_AUTH": self.layout.secrets().redis_password},
                capture_output=True,
                text=True,
                timeout=3,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.stdout.strip() == "PONG"

    def stop(self) -> bool:
        return self.pid_file.stop()
