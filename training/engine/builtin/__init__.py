"""Built-in models that ship with the repository (weights committed beside the script that trained them).

`small`: a 6-layer Llama pre-trained on the Python standard library's documentation and instruction-tuned on
chat pairs built from it (`build_small.py`). Its directory is read as any Hub model directory is; nothing writes
into it (runs save under their own output_dir).
"""

from pathlib import Path

SMALL_NAME = "small"
SMALL_DIR = Path(__file__).resolve().parent / "small"
