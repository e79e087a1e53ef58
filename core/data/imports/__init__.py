"""Reading other dataset layouts into the seed layout.

`layouts` detects and reads seed, Hugging Face VideoFolder and LLaVA/InternVL conversation files
(and is the entry point, `import_dataset`); `qevd` reads QEVD-style manifest + ground truth;
`writing` checks every row's video, places the videos and writes metadata.jsonl; `rows` holds
what they share (the row and source records, key names, small JSON readers). Never decodes a
video: clips are linked or copied as bytes.
"""

from core.data.imports.layouts import LAYOUTS, detect_layout, import_dataset
from core.data.imports.rows import ImportReport

__all__ = ["ImportReport", "LAYOUTS", "detect_layout", "import_dataset"]
