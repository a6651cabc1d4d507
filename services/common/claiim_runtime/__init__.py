"""The I/O shell shared by the services: settings, NATS connections, streams, the live registry."""
