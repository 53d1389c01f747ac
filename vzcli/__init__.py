"""vz: a local, offline Cloudflare Vectorize."""

__version__ = "0.1.0"
