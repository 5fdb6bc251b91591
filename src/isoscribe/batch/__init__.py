"""Batch workflow: many audio files through the per-file pipeline, resumable, memory-bounded.

``runner`` schedules and stops; ``plan`` decides what runs; ``file_run`` takes one file through the
pipeline and keeps its ledger row; ``gate`` puts the executor behind the memory budget; ``progress``
is the bar; ``partial`` the files kept while a file runs; ``outdir`` the output directory's lock and what a
killed run left half written.
"""

from isoscribe.batch.outdir import OutDirBusy, OutDirFull
from isoscribe.batch.partial import SPEECH_DONE_DIR
from isoscribe.batch.runner import run_batch

__all__ = ["run_batch", "OutDirBusy", "OutDirFull", "SPEECH_DONE_DIR"]
