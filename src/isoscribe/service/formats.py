"""Transcripts in OpenAI's response shapes, built on the ``openai`` package's own types.

json → ``Transcription``; verbose_json → ``TranscriptionVerbose`` with segments and/or words as
``timestamp_granularities`` asks; text, srt and vtt → text/plain. Speaker labels (isoscribe's
diarization extension) ride along as an extra ``speaker`` field on segments and words.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse, PlainTextResponse, Response
from openai.types.audio import Transcription, TranscriptionSegment, TranscriptionVerbose, TranscriptionWord

from isoscribe import outputs
from isoscribe.transcript import Transcript

__all__ = ["ResponseFormat", "Granularity", "RESPONSE_FORMATS", "render", "verbose_json"]

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")


def render(transcript: Transcript, response_format: str, granularities: list[str] | tuple[str, ...] = ()) -> Response:
    if response_format == "json":
        return JSONResponse(Transcription(text=transcript.text).model_dump(exclude_none=True))
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(transcript, granularities))
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(outputs.to_srt(transcript))
    if response_format == "vtt":
        return PlainTextResponse(outputs.to_vtt(transcript), media_type="text/vtt")
    raise ValueError(f"unknown response format {response_format!r}")


def verbose_json(transcript: Transcript, granularities: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAI includes segments by default and words only when asked for."""
    want_words = "word" in granularities
    want_segments = "segment" in granularities or not want_words
    verbose = TranscriptionVerbose(
        duration=transcript.duration_s,
        language=language_name(transcript.language),
        text=transcript.text,
        segments=[_segment(s) for s in transcript.segments] if want_segments else None,
        words=[_word(w) for s in transcript.segments for w in s.words] if want_words else None,
    )
    return verbose.model_dump(exclude_none=True)


def language_name(code: str) -> str:
    """OpenAI reports the language by name ("english"); unknown codes pass through."""
    return _LANGUAGE_NAMES.get(code, code)


def _segment(segment) -> TranscriptionSegment:
    extra = {"speaker": segment.speaker} if segment.speaker else {}
    if segment.language:
        extra["language"] = language_name(segment.language)
    return TranscriptionSegment(
        id=segment.id,
        seek=int(segment.start * 100),
        start=segment.start,
        end=segment.end,
        text=segment.text,
        tokens=[],
        temperature=segment.temperature,
        avg_logprob=segment.avg_logprob,
        compression_ratio=segment.compression_ratio,
        no_speech_prob=segment.no_speech_prob,
        **extra,
    )


def _word(word) -> TranscriptionWord:
    extra = {"speaker": word.speaker} if word.speaker else {}
    return TranscriptionWord(word=word.text, start=word.start, end=word.end, **extra)


# Whisper's languages (openai/whisper tokenizer.py LANGUAGES), code -> the name OpenAI's API returns.
_LANGUAGE_NAMES = dict(
    pair.split(":")
    for pair in (
        "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese pt:portuguese "
        "tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian id:indonesian hi:hindi "
        "fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay cs:czech ro:romanian da:danish "
        "hu:hungarian ta:tamil no:norwegian th:thai ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin "
        "mi:maori ml:malayalam cy:welsh sk:slovak te:telugu fa:persian lv:latvian bn:bengali sr:serbian "
        "az:azerbaijani sl:slovenian kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic "
        "hy:armenian ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili gl:galician "
        "mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan "
        "ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao uz:uzbek "
        "fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese sa:sanskrit "
        "lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian "
        "ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese"
    ).split()
)
_LANGUAGE_NAMES["ht"] = "haitian creole"
