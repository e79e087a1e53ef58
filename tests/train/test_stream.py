"""Streaming training data (core.train.stream): cheap start-up checks, clips encoded on demand with a
bounded cache, an unreadable clip mid-epoch skipped and logged, GRPO's resumable clip order, and a
real run whose loader worker meets a clip that broke after start-up."""

import json

import pytest
import torch

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.errors import DatasetError, VideoError
from core.spec import build_spec, resolve_defaults
from core.train.stream import (
    ClipDataset,
    SkipLog,
    StepBatches,
    cache_budget,
    check_clips,
    default_workers,
    example_bytes,
)
from core.video.frames import check_readable, sample_frames
from tests.support import make_bad_files, make_dataset


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VVW_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def encoder(tiny):
    from core.models.families import family_for_model_type

    model, processor, family = tiny
    return processor, family_for_model_type(model.config.model_type)


def _pspec(data, family):
    cfg = resolve_defaults(TrainConfig(model="tiny:default"), family, True)
    return build_spec(cfg, family, None, data.schema)


def test_header_probe_refuses_every_bad_file_without_decoding(tmp_path, fresh_cache):
    for kind, path in make_bad_files(tmp_path / "bad").items():
        with pytest.raises(VideoError) as err:
            check_readable(path)
        assert path.name in str(err.value), kind
    good = make_dataset(tmp_path / "data", n=1)
    check_readable(next((good / "videos").iterdir()))
    assert not (fresh_cache / "frames").exists()  # nothing was decoded, so nothing was cached


def test_check_clips_reports_bad_labels_and_files(tmp_path, fresh_cache):
    root = make_dataset(tmp_path / "data", n=4)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    rows[1]["event_type"] = "not_an_event"
    (root / rows[2]["video"]).write_bytes(b"not a video at all" * 100)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset(root)
    skipped, calls = [], []
    clips = check_clips(data.samples, data.schema, skipped, progress=lambda k, n: calls.append((k, n)))
    assert [c.rel for c in clips] == [data.samples[0].rel, data.samples[3].rel]
    assert len(skipped) == 2
    assert rows[1]["video"] in skipped[0] and "label breaks the schema" in skipped[0]
    assert rows[2]["video"].split("/")[-1] in skipped[1]
    assert check_clips(data.samples, data.schema, [], limit=1) == clips[:1]


def test_examples_are_what_encoding_up_front_gave_and_the_cache_keeps_to_its_budget(tmp_path, encoder):
    from core.train.setup import encode_split

    processor, family = encoder
    data = load_dataset(make_dataset(tmp_path / "data", n=4))
    pspec = _pspec(data, family)
    clips = check_clips(data.samples, data.schema, [])
    before, _ = encode_split(data.samples, data.schema, processor, pspec.sampling_spec, pspec.instruction,
                             pspec.frames_as)
    streamed = ClipDataset(clips, processor, pspec)
    assert len(streamed) == 4
    for i, old in enumerate(before):
        new = streamed[i]
        assert set(new) == set(old)
        assert all(torch.equal(new[k], old[k]) for k in old if isinstance(old[k], torch.Tensor))
    assert streamed._cache == {}  # no budget: nothing held between batches
    size = example_bytes(before[0])
    budgeted = ClipDataset(clips, processor, pspec, cache_bytes=2 * size + size // 2)
    for i in range(4):
        budgeted[i]
    assert sorted(budgeted._cache) == [0, 1] and budgeted._cached_bytes <= budgeted.cache_bytes
    assert budgeted[0] is budgeted[0]  # served from the cache
    assert cache_budget(1024, 4) == 256 << 20 and cache_budget(1024, 0) == 1024 << 20


def test_a_clip_unreadable_mid_epoch_is_logged_once_and_replaced_by_the_next(tmp_path, encoder, fresh_cache):
    processor, family = encoder
    data = load_dataset(make_dataset(tmp_path / "data", n=3))
    pspec = _pspec(data, family)
    clips = check_clips(data.samples, data.schema, [])
    log = tmp_path / "train.log"
    dataset = ClipDataset(clips, processor, pspec, log=SkipLog(log, rank=1))
    with open(clips[1].video, "wb") as fh:  # broken after the start-up check
        fh.write(b"\x00" * 4096)
    replacement = dataset[1]
    expected = ClipDataset(clips[2:], processor, pspec)[0]
    assert torch.equal(replacement["input_ids"], expected["input_ids"])
    dataset[1]
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and "skipped (rank 1)" in lines[0] and clips[1].rel.split("/")[-1] in lines[0]
    for c in clips:
        with open(c.video, "wb") as fh:
            fh.write(b"gone")
    with pytest.raises(DatasetError, match="none of the 3 training clips"):
        ClipDataset(clips, processor, pspec)[0]


def test_grpo_clip_order_is_the_same_after_a_resume():
    fresh = list(StepBatches(10, 3, seed=7, start_step=0, max_steps=9))
    resumed = list(StepBatches(10, 3, seed=7, start_step=4, max_steps=9))
    assert len(fresh) == 9 and resumed == fresh[4:]
    first_pass = [i for batch in fresh[:3] for i in batch]
    assert len(set(first_pass)) == 9  # a pass draws each clip once before any repeats
    assert list(StepBatches(2, 3, seed=0, start_step=0, max_steps=2))[0] != []  # batch larger than the data


def test_default_workers_by_device(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert default_workers("cpu") == 1
    assert default_workers("cuda") == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_workers("cpu") == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert default_workers("cpu") == 1
    assert default_workers("cuda:0", processes=4) == 4
    assert default_workers("cuda:0", processes=16) == 1


def test_training_with_a_loader_worker_skips_a_clip_that_broke_mid_run(tmp_path, fresh_cache):
    """A real run: one loader worker decodes and encodes; after step 1 a clip's file is overwritten,
    so a later pass meets it unreadable. The run completes and train.log names the file."""
    from core.runs.files import RunFiles
    from core.train.entry import train

    root = make_dataset(tmp_path / "data", n=4)
    broken = sorted((root / "videos").iterdir())[2]

    def break_after_first_step(step, max_steps, loss):
        if step == 1:
            broken.write_bytes(b"\x00" * 4096)

    run = tmp_path / "run"
    cfg = TrainConfig(max_steps=6, batch_size=2, warmup_steps=0, save_steps=1000, logging_steps=1,
                      dataloader_workers=1, encoded_cache_mb=0, num_frames=4)
    status = train(root, run, cfg, echo=break_after_first_step)
    assert status["state"] == "completed" and status["global_step"] == 6
    log = (run / "train.log").read_text()
    assert f"skipped {broken}" in log and "while training" in log
    assert "1 loader worker per process" in log
    rows = [r for r in RunFiles(run).read_metrics() if "loss" in r]
    assert all(0.0 <= r["data_wait"] <= 1.0 for r in rows)


def test_sampling_the_frames_twice_gives_the_cached_frames(tmp_path, encoder, fresh_cache):
    """The dataset reads frames through the frame cache: a second epoch decodes nothing."""
    processor, family = encoder
    data = load_dataset(make_dataset(tmp_path / "data", n=2))
    pspec = _pspec(data, family)
    ClipDataset(check_clips(data.samples, data.schema, []), processor, pspec)[0]
    entries = list((fresh_cache / "frames").iterdir())
    assert len(entries) == 1
    again = sample_frames(data.samples[0].video, pspec.sampling_spec)
    assert again.frames.shape[0] == pspec.sampling_spec.num_frames
    assert list((fresh_cache / "frames").iterdir()) == entries


def test_the_status_line_shows_the_first_pass_and_a_decoding_bottleneck():
    from core.train.callbacks import RunCallback

    cb = RunCallback(run=None, metrics=None, pspec=None, clips=2000)
    assert cb._message(0.25, 0.05) == "training; first pass over the clips: 500 of 2000 read"
    assert cb._message(0.5, 0.6).endswith("1000 of 2000 read, the model waits for video decoding 60% of the time")
    assert cb._message(1.2, 0.6) == "training"  # later passes read the caches


def test_a_resumed_sft_run_draws_the_batches_an_uninterrupted_run_draws(tmp_path, monkeypatch):
    import core.train.sft as sft
    from core.train.entry import train

    seen = []
    real = sft.CountingCollator.__call__

    def recording(self, examples):
        seen.append([tuple(ex["input_ids"][0].tolist()) for ex in examples])
        return real(self, examples)

    monkeypatch.setattr(sft.CountingCollator, "__call__", recording)
    root = make_dataset(tmp_path / "data", n=6)
    cfg = TrainConfig(max_steps=5, batch_size=2, warmup_steps=0, save_steps=1000, logging_steps=1, num_frames=4,
                      dataloader_workers=0)
    train(root, tmp_path / "fresh", cfg)
    fresh, seen[:] = list(seen), []

    def stop_after_two(step, max_steps, loss):
        if step == 1:  # logged after step 1 ends; the STOP file is read when step 2 ends
            (tmp_path / "cut" / "STOP").touch()

    assert train(root, tmp_path / "cut", cfg, echo=stop_after_two)["global_step"] == 2
    before, seen[:] = list(seen), []
    assert train(root, tmp_path / "cut", cfg, resume=True)["global_step"] == 5
    assert len(fresh) >= 5 and before[:2] == fresh[:2]
    assert seen[:3] == fresh[2:5]  # steps 3-5 see the clips they would have seen, in the same order
