"""isoscribe: transcription, alignment, diarization and summarization in isolated worker processes."""

__version__ = "0.1.0"
