"""Checks and installs what the stack needs, failing with one line that names the fix."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from dicom_pipeline_dev.stack.errors import StackError

_apt_updated = False


def ensure_debian_package(package: str, present: bool) -> None:
    """Install a Debian package when its program is missing (root only)."""
    global _apt_updated
    if present:
        return
    if os.geteuid() != 0:
        raise StackError(f"{package} is not installed; run: sudo apt-get update && sudo apt-get install -y {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
            _apt_updated = True
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env, capture_output=True)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise StackError(f"apt-get install {package} failed: {' '.join(detail)}") from exc


def orthanc_binary() -> Path | None:
    found = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    return Path(found) if found else None


def postgres_bin_dir() -> Path | None:
    """The newest server installed by Debian's postgresql package."""
    base = Path("/usr/lib/postgresql")
    candidates = sorted(
        (p for p in base.glob("*/bin") if (p / "postgres").exists() and (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return candidates[-1] if candidates else None


@functools.cache
def require_java17() -> str:
    """The java binary, checked once per process (the stack calls it for every Kafka tool)."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java 17 or newer is required for Kafka; install it: apt-get install -y openjdk-17-jre-headless"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise StackError(f"Kafka needs Java 17 or newer, found: {out.splitlines()[0] if out else 'unknown'}")
    return java


def require_java(minimum: int, purpose: str) -> str:
    """A java binary of at least `minimum`: JAVA_HOME's, the one on PATH, then any JDK under
    /usr/lib/jvm (these machines keep a Temurin 25 beside Debian's Java 17)."""
    candidates = [Path(os.environ["JAVA_HOME"]) / "bin" / "java"] if os.environ.get("JAVA_HOME") else []
    on_path = shutil.which("java")
    candidates += [Path(on_path)] if on_path else []
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    found = []
    for java in candidates:
        if not java.exists():
            continue
        version = _java_major(str(java))
        if version is not None and version >= minimum:
            return str(java)
        found.append(f"{java} ({version})")
    raise StackError(
        f"{purpose} needs Java {minimum} or newer (found: {', '.join(found) or 'none'}); "
        f"install one (e.g. a Temurin {minimum}+ JDK) or point JAVA_HOME at it"
    )


def _java_major(java: str) -> int | None:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven is required to fetch the Kafka broker jars; install it: apt-get install -y maven")
    return mvn
