"""The local real-services stack: Orthanc, PostgreSQL and Apache Kafka on loopback."""
