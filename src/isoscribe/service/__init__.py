"""OpenAI-compatible transcription service whose model work runs in recycled worker processes.

``create_app(settings, executor=None)`` builds the FastAPI app; ``serve_command`` is ``isoscribe serve``.
"""

from isoscribe.service.app import create_app
from isoscribe.service.server import serve_command

__all__ = ["create_app", "serve_command"]
