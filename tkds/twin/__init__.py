"""The TikTok twin: a local TikTok behind a TLS-terminating proxy, for tests and demos."""
