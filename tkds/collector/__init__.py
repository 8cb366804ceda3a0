"""The collector: discover, fetch and store TikTok videos, audio and metadata in DuckDB."""
