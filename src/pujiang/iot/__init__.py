"""Device ingest: FIWARE IoT Agent JSON devices over MQTT and HTTP, written into the broker."""
