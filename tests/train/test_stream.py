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
    loader_workers,
)
from core.video.frames import check_readable
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
    budgeted.set_cache_budget(budgeted.cache_bytes)
    assert sorted(budgeted._cache) == [0, 1]  # the same budget keeps what is held
    budgeted.set_cache_budget(0)  # workers will encode: the training process holds nothing
    assert budgeted._cache == {} and budgeted._cached_bytes == 0
    assert cache_budget(1024, 0) == cache_budget(1024, 1) == 1024 << 20 and cache_budget(1024, 4) == 0


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
    small = list(StepBatches(2, 3, seed=0, start_step=0, max_steps=2))  # a batch larger than the data
    assert [len(b) for b in small] == [3, 3] and set(small[0]) == {0, 1}


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


def test_a_second_pass_reads_the_frame_cache_instead_of_decoding(tmp_path, encoder, fresh_cache, monkeypatch):
    import core.video.frames

    processor, family = encoder
    data = load_dataset(make_dataset(tmp_path / "data", n=2))
    pspec = _pspec(data, family)
    clips = check_clips(data.samples, data.schema, [])
    first = ClipDataset(clips, processor, pspec)[0]
    assert len(list((fresh_cache / "frames").iterdir())) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(core.video.frames, "_sample_uncached", no_decoding)
    again = ClipDataset(clips, processor, pspec)[0]  # a new dataset: no encoded-clip cache to hide behind
    assert torch.equal(again["pixel_values_videos"], first["pixel_values_videos"])


def test_workers_are_dropped_when_shared_memory_cannot_hold_their_batches(monkeypatch):
    import core.train.stream as stream

    said = []
    monkeypatch.setattr(stream, "shm_free_bytes", lambda: 64 << 20)  # a container's default /dev/shm
    assert loader_workers(None, "cuda", 1, 88 << 20, said.append) == 0
    assert "no loader workers" in said[0] and "--shm-size" in said[0]
    assert loader_workers(2, "cuda", 1, 88 << 20, said.append) == 2 and said[1].startswith("warning")
    assert loader_workers(None, "cpu", 1, 1 << 20, said.append) == default_workers("cpu")
    assert loader_workers(0, "cpu", 1, 1 << 30, said.append) == 0 and len(said) == 2


def test_grpo_batches_leave_the_worker_as_copies():
    from core.train.stream import owned

    enc = {"input_ids": torch.ones(1, 3, dtype=torch.long), "note": "x"}
    out = owned([(enc, {"a": 1})])
    assert out[0][1] == {"a": 1} and out[0][0]["note"] == "x"
    assert torch.equal(out[0][0]["input_ids"], enc["input_ids"])
    assert out[0][0]["input_ids"].data_ptr() != enc["input_ids"].data_ptr()


def test_the_val_evaluator_leaves_out_a_clip_that_no_longer_decodes(tmp_path, tiny, encoder):
    from core.train.callbacks import ValEvaluator, blank_frames

    model, processor, family = tiny
    data = load_dataset(make_dataset(tmp_path / "data", n=3))
    pspec = _pspec(data, encoder[1])
    clips = check_clips(data.samples, data.schema, [])
    for c in clips[1:]:
        with open(c.video, "wb") as fh:
            fh.write(b"\x00" * 2048)
    row = ValEvaluator(processor, family, pspec, clips, batch_size=2, max_new_tokens=4)(model, step=1)
    assert row["eval_clips"] == 1  # the batch of the two broken clips still generated (on blank frames)
    blank = blank_frames(pspec.sampling_spec)
    assert blank.frames.shape == (pspec.sampling_spec.num_frames, pspec.sampling_spec.height,
                                  pspec.sampling_spec.width, 3)


def test_the_status_line_shows_the_first_pass_and_a_decoding_bottleneck():
    from core.train.callbacks import RunCallback

    cb = RunCallback(run=None, metrics=None, pspec=None, clips=2000)
    assert cb._message(0.25, 0.05) == "training; first pass over the clips: 500 of 2000 read"
    assert cb._message(0.5, 0.6).endswith("1000 of 2000 read, the model waits for video decoding 60% of the time")
    assert cb._message(1.2, 0.6) == "training"  # later passes read the caches


def test_a_resumed_sft_run_draws_the_batches_an_uninterrupted_run_draws(tmp_path, monkeypatch):
    """With the default loader (one persistent worker here), resuming at step 2 skips the batches
    already trained on and continues with the clips an uninterrupted run sees, in the same order."""
    import transformers

    from core.train.entry import train

    seen = []
    real = transformers.Trainer.get_batch_samples

    def recording(self, *args, **kwargs):
        batches, n = real(self, *args, **kwargs)
        seen.extend([tuple(row.tolist()) for row in b["input_ids"]] for b in batches)
        return batches, n

    monkeypatch.setattr(transformers.Trainer, "get_batch_samples", recording)
    root = make_dataset(tmp_path / "data", n=6)
    cfg = TrainConfig(max_steps=5, batch_size=2, warmup_steps=0, save_steps=1000, logging_steps=1, num_frames=4,
                      dataloader_workers=1)
    status = train(root, tmp_path / "fresh", cfg)
    fresh, seen[:] = list(seen), []
    assert [r["examples"] for r in status["ranks"]] == [sum(map(len, fresh))]  # counted in the training process

    def stop_after_two(step, max_steps, loss):
        if step == 1:  # logged after step 1 ends; the STOP file is read when step 2 ends
            (tmp_path / "cut" / "STOP").touch()

    assert train(root, tmp_path / "cut", cfg, echo=stop_after_two)["global_step"] == 2
    log = (tmp_path / "cut" / "train.log").read_text()
    assert "step 1/5: loss" in log and "step 2/5: loss" in log and "saved checkpoint-2" in log  # the tab's log tail
    before, seen[:] = list(seen), []
    assert train(root, tmp_path / "cut", cfg, resume=True)["global_step"] == 5
    assert len(fresh) == 5 and before[:2] == fresh[:2]
    assert seen == fresh[2:5]  # steps 3-5 see the clips they would have seen, in the same order
