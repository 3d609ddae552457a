"""A private Orthanc with authentication, a short StableAge and the webhook Lua script."""

from __future__ import annotations

import json
import os
from importlib import resources

import requests

from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.layout import StackLayout
from dicom_pipeline_dev.stack.prerequisites import ensure_debian_package, orthanc_binary
from dicom_pipeline_dev.stack.process import PidFile, ensure_port_free, start_detached, wait_until

# The project's own callbacks (OnStableStudy, deletions), as deployments use them.
LUA_SCRIPT = resources.files("dicom_pipeline.orthanc") / "dicom-pipeline.lua"


class OrthancService:
    name = "orthanc"

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.settings = layout.settings
        self.dir = layout.root / "orthanc"
        self.config_path = self.dir / "orthanc.json"
        self.log = self.dir / "orthanc.log"
        self.pid_file = PidFile(self.dir / "orthanc.pid", "Orthanc")

    def install(self) -> None:
        ensure_debian_package("orthanc", orthanc_binary() is not None)

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def configure(self) -> None:
        secrets = self.layout.secrets()
        self.dir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "dicom-pipeline-dev",
            "StorageDirectory": str(self.dir / "storage"),
            "IndexDirectory": str(self.dir / "index"),
            "HttpPort": self.settings.orthanc_http_port,
            "DicomPort": self.settings.orthanc_dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.settings.orthanc_username: secrets.orthanc_password},
            "StableAge": self.settings.orthanc_stable_age,
            "LuaScripts": [str(LUA_SCRIPT)],
            "HttpTimeout": 5,
            "Plugins": [],
            "SaveJobs": False,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)

    def start(self) -> None:
        binary = orthanc_binary()
        if binary is None:
            raise StackError("Orthanc is not installed; run: apt-get install -y orthanc")
        ensure_port_free(self.settings.orthanc_http_port, "Orthanc HTTP", "DICOM_PIPELINE_ORTHANC_HTTP_PORT")
        ensure_port_free(self.settings.orthanc_dicom_port, "Orthanc DICOM", "DICOM_PIPELINE_ORTHANC_DICOM_PORT")
        self.configure()
        secrets = self.layout.secrets()
        # The Lua callbacks read where to post, and the token, from Orthanc's environment.
        env = {
            **os.environ,
            "DICOM_PIPELINE_WEBHOOK_URL": self.layout.webhook_url(),
            "DICOM_PIPELINE_WEBHOOK_TOKEN": secrets.webhook_token,
        }
        process = start_detached([str(binary), str(self.config_path)], self.pid_file, self.log, cwd=self.dir, env=env)
        wait_until(self.answers, "Orthanc", 60, self.log, process)

    def answers(self) -> bool:
        try:
            response = requests.get(
                f"{self.layout.orthanc_url()}/system",
                auth=(self.settings.orthanc_username, self.layout.secrets().orthanc_password),
                timeout=2,
            )
        except requests.RequestException:
            return False
        return response.status_code == 200

    def stop(self) -> bool:
        return self.pid_file.stop()
