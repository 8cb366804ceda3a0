"""The TikTok twin: a local TikTok behind a TLS-terminating proxy, for tests and demos."""

from tkds.twin.corpus import TwinCorpus, load_corpus
from tkds.twin.server import Twin, run_forever, serve, spawn

__all__ = ["Twin", "TwinCorpus", "load_corpus", "run_forever", "serve", "spawn"]
