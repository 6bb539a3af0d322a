"""Security tests: inputs that try to hang, confuse or slip past govern."""
