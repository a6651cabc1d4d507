"""The control handler: validates admin commands against the registry and appends control events."""
