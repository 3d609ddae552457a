"""The librdkafka properties every Kafka client of the project uses besides bootstrap.servers.

One function, so the producer, the readiness check, the stack's admin client and the tests
all speak to an authenticated broker the same way (TLS, SASL/SCRAM or PLAIN, client
certificates).
"""

from __future__ import annotations

from dicom_pipeline.settings import Settings


class KafkaSecurityConfigError(ValueError):
    """A security setting is missing or contradicts another; the message names it."""


def kafka_client_config(settings: Settings) -> dict[str, str]:
    protocol = settings.kafka_security_protocol
    config: dict[str, str] = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        missing = [
            name
            for name, value in (
                ("DICOM_PIPELINE_KAFKA_SASL_MECHANISM", settings.kafka_sasl_mechanism),
                ("DICOM_PIPELINE_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
                ("DICOM_PIPELINE_KAFKA_SASL_PASSWORD", password),
            )
            if not value
        ]
        if missing:
            raise KafkaSecurityConfigError(f"security protocol {protocol} needs {', '.join(missing)}")
        config.update(
            {
                "sasl.mechanism": str(settings.kafka_sasl_mechanism),
                "sasl.username": str(settings.kafka_sasl_username),
                "sasl.password": password,
            }
        )
    if protocol.endswith("SSL"):
        if settings.kafka_ssl_ca_location:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_location
        if settings.kafka_ssl_certificate_location or settings.kafka_ssl_key_location:
            if not (settings.kafka_ssl_certificate_location and settings.kafka_ssl_key_location):
                raise KafkaSecurityConfigError(
                    "a client certificate needs both DICOM_PIPELINE_KAFKA_SSL_CERTIFICATE_LOCATION "
                    "and DICOM_PIPELINE_KAFKA_SSL_KEY_LOCATION"
                )
            config["ssl.certificate.location"] = settings.kafka_ssl_certificate_location
            config["ssl.key.location"] = settings.kafka_ssl_key_location
            if settings.kafka_ssl_key_password:
                config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
        config["ssl.endpoint.identification.algorithm"] = "https" if settings.kafka_ssl_check_hostname else "none"
    return config
