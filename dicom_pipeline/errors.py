"""The project's exceptions. Retries depend on the split between transient and permanent."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error dicom-pipeline raises on purpose."""

    transient = False

    def __init__(self, message: str, *, study_uid: str | None = None, instance: str | None = None) -> None:
        super().__init__(message)
        self.study_uid = study_uid
        self.instance = instance

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the identifiers when the error crosses a process boundary (worker pools).
        return (_rebuild, (type(self), str(self), self.study_uid, self.instance))


def _rebuild(cls: type[PipelineError], message: str, study_uid: str | None, instance: str | None) -> PipelineError:
    return cls(message, study_uid=study_uid, instance=instance)


class TransientError(PipelineError):
    """Worth retrying: the same call may succeed in a moment."""

    transient = True


class PermanentError(PipelineError):
    """Retrying cannot help: the input itself is wrong."""


class OrthancError(PermanentError):
    """Orthanc answered, but not with what we asked for (e.g. an unknown study)."""


class OrthancNotFound(OrthancError):
    """Orthanc has no such resource (never had it, or it was deleted)."""


class StudyChangedWhileReading(TransientError):
    """An instance listed a moment ago is gone (deleted while the study was read): read again."""


class OrthancUnavailable(TransientError):
    """Orthanc could not be reached, timed out, or answered 5xx."""


class InvalidDicom(PermanentError):
    """A file is not DICOM pydicom can parse, or lacks a required attribute."""


class InvalidIdentifier(PermanentError):
    """A UID or Orthanc id that does not have the required form."""


class StorageError(TransientError):
    """The raw-DICOM store could not be written or read."""


class DatabaseUnavailable(TransientError):
    """PostgreSQL could not be reached or dropped the connection."""


class EventPublishError(TransientError):
    """Kafka did not acknowledge an event in time."""


class SchemaViolation(PermanentError):
    """An event payload does not match its published JSON Schema."""
