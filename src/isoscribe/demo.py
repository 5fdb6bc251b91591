"""The demo: a two-voice meeting dialogue rendered with espeak-ng, then the batch pipeline on it."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.config import Settings

__all__ = ["DIALOGUE_SCRIPT", "VOICES", "make_dialogue", "render_script", "dialogue_script_path", "demo_command"]

VOICES = {
    "alice": ("en-gb+f4", 75, 150),
    "bob": ("en-us+m3", 30, 165),
}
"""Speaker → (espeak-ng voice, pitch 0-99, words per minute): clearly different voices."""

DIALOGUE_SCRIPT: tuple[tuple[str, str], ...] = (
    ("alice", "Good morning Bob. Let's review the release plan for the mobile app before Friday."),
    ("bob", "Morning Alice. The payment screen is finished, but the login bug is still open."),
    ("alice", "Okay. Can you fix the login bug and send me a short report by Wednesday?"),
    ("bob", "Yes, I will fix it by Wednesday. We also need new screenshots for the store page."),
    ("alice", "Right. I will ask the design team for the screenshots today."),
    ("bob", "Great. Then we can ship the release on Friday afternoon."),
)
"""(speaker, text) in speaking order: four to six alternating turns with two action items."""

_PAUSE_S = 0.7


def make_dialogue(path: str | Path) -> Path:
    """Render ``DIALOGUE_SCRIPT`` to a 16 kHz mono WAV at ``path``; the script goes next to it as json."""
    return render_script(path, DIALOGUE_SCRIPT, VOICES)


def render_script(
    path: str | Path,
    script: Sequence[tuple[str, str]],
    voices: Mapping[str, tuple[str, int, int]],
    pause_s: float = _PAUSE_S,
) -> Path:
    """Render (speaker, text) turns with ``voices`` (speaker → espeak-ng voice, pitch, words per minute)
    to a 16 kHz mono WAV at ``path``, ``pause_s`` of silence around each turn; the turns with their
    speaker, voice, text and times go next to it as json (``dialogue_script_path``)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pause = np.zeros(int(pause_s * SAMPLE_RATE), dtype=np.float32)
    pieces: list[np.ndarray] = [pause]
    turns: list[dict] = []
    position_s = pause_s
    with tempfile.TemporaryDirectory(prefix="isoscribe-dialogue-") as temp:
        for index, (speaker, text) in enumerate(script):
            voice, pitch, speed = voices[speaker]
            turn_wav = Path(temp) / f"turn{index}.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(turn_wav), text],
                check=True,
                capture_output=True,
            )
            samples = decode_audio(turn_wav)
            end_s = position_s + samples.size / SAMPLE_RATE
            turns.append({"speaker": speaker, "voice": voice, "text": text, "start": position_s, "end": end_s})
            pieces += [samples, pause]
            position_s += (samples.size + pause.size) / SAMPLE_RATE
    _write_wav(path, np.concatenate(pieces))
    dialogue_script_path(path).write_text(json.dumps({"turns": turns}, indent=2) + "\n", encoding="utf-8")
    return path


def dialogue_script_path(wav_path: str | Path) -> Path:
    """Where ``make_dialogue`` records the script with each turn's speaker, text and times."""
    return Path(wav_path).with_suffix(".script.json")


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())


def demo_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe demo`` (what ``make run`` runs): render the dialogue, run the batch on it with
    diarization into two speakers and a summary, then show where every output is."""
    from isoscribe.batch import run_batch

    out_dir = Path(args.out)
    audio = make_dialogue(out_dir / "audio" / "dialogue.wav")
    demo_settings = settings.model_copy(
        update={
            "diarization": settings.diarization.model_copy(update={"enabled": True, "num_speakers": 2}),
            "llm": settings.llm.model_copy(update={"enabled": True}),
            "batch": settings.batch.model_copy(update={"summarize": True}),
        }
    )
    report = run_batch(demo_settings, [audio], out_dir)
    [item] = report.files
    print(f"\ndemo audio:  {audio}  (script: {dialogue_script_path(audio)})")
    if item.status == "failed":
        print(f"demo failed: {item.error}")
        return 1
    print(f"outputs ({'made earlier, same audio and settings' if item.status == 'skipped' else 'new'}):")
    for output in item.outputs:
        print(f"  {out_dir / output}")
    print(f"report:      {out_dir / 'report.md'}, {out_dir / 'report.json'}, {out_dir / 'memory.png'}")
    print(f"ledger:      {out_dir / 'ledger.sqlite'}")
    outputs = {Path(output).name: out_dir / output for output in item.outputs}
    transcript = outputs.get(f"{audio.stem}.txt")
    if transcript is not None:
        print("\ntranscript (first lines):")
        for line in transcript.read_text(encoding="utf-8").splitlines()[:4]:
            print(f"  {line}")
    summary = outputs.get(f"{audio.stem}.summary.md")
    if summary is not None:
        print("\nsummary:")
        for line in summary.read_text(encoding="utf-8").splitlines()[:12]:
            print(f"  {line}")
    if item.warning:
        print(f"\nwarning: {item.warning}")
    return 0
