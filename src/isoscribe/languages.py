"""The language codes Whisper models know, checkable in a parent without importing faster-whisper."""

from __future__ import annotations

__all__ = ["WHISPER_LANGUAGES", "LANGUAGE_NAMES", "check_language", "language_code"]

WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu "
    "hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt "
    "ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue".split()
)
"""faster_whisper.tokenizer._LANGUAGE_CODES (ISO 639-1, plus haw and yue)."""


def check_language(code: str | None) -> str | None:
    """``code`` lower-cased when Whisper knows it; ValueError naming the code otherwise."""
    if code is None:
        return None
    normalized = code.strip().lower()
    if normalized not in WHISPER_LANGUAGES:
        raise ValueError(f"unknown language {code!r}; use an ISO 639-1 code such as en, de or fr")
    return normalized


LANGUAGE_NAMES = dict(
    pair.replace("_", " ").split(":")
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
"""Whisper's languages (openai/whisper tokenizer.py LANGUAGES), code -> the name OpenAI's API returns."""
_CODES = {name: code for code, name in LANGUAGE_NAMES.items()} | {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb", "pushto": "ps",
    "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si", "castilian": "es", "mandarin": "zh",
}
"""Whisper's own aliases too (tokenizer.py TO_LANGUAGE_CODE)."""


def language_code(value: str | None) -> str | None:
    """The code of a language given by its name, as whisper's and WhisperX's command lines take it
    ("English", "haitian creole"); anything else unchanged."""
    if value is None:
        return None
    return _CODES.get(" ".join(value.lower().split()), value)
