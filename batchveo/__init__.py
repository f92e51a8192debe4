"""batchveo: turn a manifest of prompts and images into Veo 3.1 videos on disk, unattended."""

__version__ = "0.1.0"
