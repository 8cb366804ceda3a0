"""tkds: TikTok as a research-grade video dataset and self-supervised benchmark."""

__version__ = "0.1.0"
