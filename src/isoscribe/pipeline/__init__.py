"""The per-file pipeline every entry point shares: probe → speech → finish → summary → outputs.

``FilePipeline`` (sequence.py) is the one place that defines the stage sequence; ``Policy`` (policy.py)
is what an entry point may vary; ``events`` are what listeners see while a file runs.
"""

from isoscribe.pipeline.events import (
    Event,
    FileDone,
    FileFailed,
    Listener,
    Probed,
    Progress,
    SegmentReady,
    StageFinished,
    StageStarted,
    StageWarning,
)
from isoscribe.pipeline.policy import FailureKind, PipelineError, Policy, RetryPolicy, batch_policy
from isoscribe.pipeline.progress import ProgressTracker
from isoscribe.pipeline.cancellation import Cancellation
from isoscribe.pipeline.sequence import FilePipeline, FileResult, OutputWriter
from isoscribe.pipeline.stages import speech_limits, speech_request, speech_stage, stage_specs, summary_request

__all__ = [
    "Cancellation",
    "Event",
    "FailureKind",
    "FileDone",
    "FileFailed",
    "FilePipeline",
    "FileResult",
    "Listener",
    "OutputWriter",
    "PipelineError",
    "Policy",
    "Probed",
    "Progress",
    "ProgressTracker",
    "RetryPolicy",
    "SegmentReady",
    "StageFinished",
    "StageStarted",
    "StageWarning",
    "batch_policy",
    "speech_limits",
    "speech_request",
    "speech_stage",
    "stage_specs",
    "summary_request",
]
