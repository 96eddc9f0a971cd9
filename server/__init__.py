"""tokenmill's server: the gateway, its engines, metering and pricing."""
