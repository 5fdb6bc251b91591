"""``isoscribe bench overlap``: its mixes of real readers talk over each other, and its threshold is the
one with the least DER on the sources it is chosen on."""

from __future__ import annotations

from pathlib import Path

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.overlap import choose_threshold, make_mix


def test_a_mix_has_two_readers_whose_turns_overlap(tmp_path: Path, shared_data: Path) -> None:
    path = make_mix(tmp_path / "mix.wav", seed=3, data_dir=shared_data)
    rows = [line.split() for line in path.with_suffix(".rttm").read_text().splitlines()]
    spans = [(float(r[3]), float(r[3]) + float(r[4]), r[7]) for r in rows]
    assert len({speaker for *_, speaker in spans}) == 2
    overlapped = [(a, b) for a, b, one in spans for c, d, other in spans if one != other and a < d and c < b]
    assert overlapped
    assert max(end for _, end, _ in spans) <= decode_audio(path).size / SAMPLE_RATE


def test_the_threshold_is_the_least_mean_der_over_the_sources_it_is_chosen_on() -> None:
    sources = {
        "a": {"0.1": 0.30, "0.15": 0.30, "0.2": 0.10, "0.3": 0.20, "0.4": 0.20, "0.5": 0.20},
        "b": {"0.1": 0.00, "0.15": 0.00, "0.2": 0.10, "0.3": 0.05, "0.4": 0.05, "0.5": 0.05},
    }
    assert choose_threshold(sources, ("a",)) == 0.2
    assert choose_threshold(sources, ("b",)) == 0.1
    assert choose_threshold(sources, ("a", "b")) == 0.2  # means 0.15, 0.15, 0.10, 0.125, 0.125, 0.125
