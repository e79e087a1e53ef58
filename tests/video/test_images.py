"""Still images as dataset items: a one-frame sample that loads, encodes, trains and predicts through
the same code as video clips (a wildfire-from-satellite style yes/no task)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.errors import VideoError
from core.models.inputs import IGNORE_INDEX, encode_example, vision_placeholder_ids
from core.video.frames import probe, sample_frames
from core.video.sampling import SamplingSpec
from tests.support import IMAGE_SCHEMA as SCHEMA
from tests.support import terrain


@pytest.fixture(scope="module")
def wildfire(tmp_path_factory):
    root = tmp_path_factory.mktemp("wildfire")
    (root / "videos").mkdir()
    (root / "schema.json").write_text(json.dumps(SCHEMA))
    rows = []
    for i in range(8):
        fire = i % 2 == 0
        name = f"videos/tile_{i:02d}.{'jpg' if i == 7 else 'png'}"
        terrain(i, fire).save(root / name)
        rows.append({"video": name, "split": "val" if i >= 6 else "train", "wildfire": "yes" if fire else "no"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_image_is_a_one_frame_sample_resized_like_video_frames(wildfire):
    path = wildfire / "videos" / "tile_00.png"
    spec = SamplingSpec(num_frames=8, width=96, height=64)
    s = sample_frames(path, spec)
    assert s.frames.shape == (1, 64, 96, 3) and s.frames.dtype == np.uint8
    assert s.indices == [0] and s.timestamps == [0.0]
    expected = np.asarray(Image.open(path).convert("RGB").resize((96, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(s.frames[0], expected)
    assert np.array_equal(sample_frames(path, spec).frames, s.frames)  # from the cache, same pixels
    info = probe(path)
    assert (info.frame_count, info.width, info.height, info.codec) == (1, 120, 80, "image/png")


def test_exif_orientation_is_applied(tmp_path):
    img = terrain(1, True, size=(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    info = probe(tmp_path / "rotated.jpg")
    assert (info.width, info.height) == (40, 60)


def test_broken_image_is_a_video_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    with pytest.raises(VideoError, match="broken.png"):
        sample_frames(bad, SamplingSpec())


def test_image_dataset_loads_and_encodes_with_a_masked_answer(wildfire, tiny):
    model, processor, family = tiny
    data = load_dataset(wildfire)
    assert not data.problems and len(data.samples) == 8
    s = data.samples[0]
    frames = sample_frames(s.video, SamplingSpec(num_frames=8, width=96, height=64))
    ex = encode_example(processor, "Is there a wildfire?", frames, family.frames_as, '{"wildfire":"yes"}')
    ids, labels = ex["input_ids"][0], ex["labels"][0]
    n_vision = sum(int((ids == t).sum()) for t in vision_placeholder_ids(processor))
    assert n_vision == 24  # one 96x64 frame (repeated to the temporal patch of 2): 12x8 patches / 4
    assert processor.tokenizer.decode(labels[labels != IGNORE_INDEX]).startswith('{"wildfire":"yes"}')
    with torch.no_grad():
        assert torch.isfinite(model(**ex).loss)


def test_image_dataset_trains_two_steps_and_predicts(wildfire, tmp_path):
    from core.serve.predictor import Predictor
    from core.train.entry import train

    status = train(wildfire, tmp_path / "run", TrainConfig(max_steps=2, batch_size=4, logging_steps=1,
                                                          save_steps=1000, warmup_steps=0))
    assert status["state"] == "completed" and status["global_step"] == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert "checked 6 clips" in log and "skipped 0" in log
    predictor = Predictor.load(str(tmp_path / "run"))
    rows = predictor.predict([wildfire / "videos" / "tile_06.png", wildfire / "videos" / "tile_07.jpg"],
                             max_new_tokens=8)
    assert [r.error for r in rows] == [None, None] and all(r.new_tokens > 0 for r in rows)


def test_predict_lists_images_in_a_folder(wildfire):
    from core.serve.batch import list_inputs

    keys = [k for k, _ in list_inputs(wildfire / "videos")]
    assert keys == [f"tile_{i:02d}.{'jpg' if i == 7 else 'png'}" for i in range(8)]
