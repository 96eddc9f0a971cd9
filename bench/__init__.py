"""tokenmill's benchmarks: they talk to servers over HTTP like any client."""
