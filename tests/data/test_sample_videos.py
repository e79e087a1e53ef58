"""Tests for sample_videos/generate.py: files, schema, splits, determinism, and pixel-level cues."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest

from tests.support import SAMPLES

GENERATE_PY = SAMPLES / "generate.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("sample_videos_generate", GENERATE_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # importable by name: --workers pickles its functions by name
    spec.loader.exec_module(module)
    return module


gen = _load_generator()

LABEL_KEYS = [
    "caption",
    "event_type",
    "rule_violations",
    "intended_driving_action",
    "traffic_density",
    "visibility",
]


def make_labels(**overrides) -> dict:
    labels = {
        "event_type": "no_incident",
        "rule_violations": [],
        "intended_driving_action": "change_lanes",
        "traffic_density": "low",
        "visibility": "good",
    }
    labels.update(overrides)
    labels["caption"] = gen.compose_caption(labels)
    return labels


def render(seed: int = 0, **overrides) -> np.ndarray:
    frames = gen.render_clip(make_labels(**overrides), np.random.default_rng(seed))
    return np.stack(frames).astype(np.float32)


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def red_fraction(region: np.ndarray) -> float:
    r, g, b = region[..., 0], region[..., 1], region[..., 2]
    return float(np.mean((r > 150) & (g < 90) & (b < 90)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    assert gen.main(["--seed", "7", "--count", "6", "--out", str(out)]) == 0
    return out


def read_metadata(out: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    ]


# ---------------------------------------------------------------------------- files, schema, splits


def test_writes_videos_metadata_and_schema(dataset):
    records = read_metadata(dataset)
    assert len(records) == 6
    assert (dataset / "schema.json").is_file()
    for record in records:
        assert list(record) == ["video", "split"] + LABEL_KEYS
        assert (dataset / record["video"]).is_file()
        assert record["video"].startswith("videos/") and record["video"].endswith(
            ".mp4"
        )
    assert len(list((dataset / "videos").glob("*.mp4"))) == 6


def test_metadata_validates_against_schema(dataset):
    schema = json.loads((dataset / "schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(schema["properties"]) == LABEL_KEYS
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(LABEL_KEYS)
    validator = jsonschema.Draft202012Validator(schema)
    for record in read_metadata(dataset):
        labels = {key: record[key] for key in LABEL_KEYS}
        validator.validate(labels)
        canonical = [v for v in gen.RULE_VIOLATIONS if v in labels["rule_violations"]]
        assert labels["rule_violations"] == canonical
        assert labels["caption"] == gen.compose_caption(labels)
        assert len(labels["caption"].split()) < 30


def test_every_split_present(dataset):
    assert {r["split"] for r in read_metadata(dataset)} == {"train", "val", "test"}


def test_split_sizes_are_80_10_10():
    splits = [entry["split"] for entry in gen.plan_dataset(1234, 200)]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (
        160,
        20,
        20,
    )


def test_decoded_clips_have_30_frames_of_160x96(dataset):
    for record in read_metadata(dataset)[:3]:
        frames = decode(dataset / record["video"])
        assert len(frames) == gen.N_FRAMES == 30
        assert all(frame.shape == (96, 160, 3) for frame in frames)


# ---------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_dataset(dataset, tmp_path):
    assert gen.main(["--seed", "7", "--count", "6", "--out", str(tmp_path)]) == 0
    for name in ("metadata.jsonl", "schema.json"):
        assert (tmp_path / name).read_bytes() == (dataset / name).read_bytes()
    for record in read_metadata(dataset):
        # Same library versions in one process: the encoded bytes, not just the frames, match.
        assert (tmp_path / record["video"]).read_bytes() == (
            dataset / record["video"]
        ).read_bytes()


def test_different_seed_gives_different_labels():
    def labels(seed):
        return [entry["labels"] for entry in gen.plan_dataset(seed, 20)]

    assert labels(0) != labels(1)
    assert labels(0) == labels(0)


def test_render_is_deterministic():
    assert np.array_equal(
        render(seed=3, visibility="bad"), render(seed=3, visibility="bad")
    )


# ---------------------------------------------------------------------------- cues are drawn


def _scene_stats(clip: np.ndarray) -> tuple[float, float, float]:
    scene = clip[:, : gen.HUD_TOP]
    gray = scene.mean(-1)
    saturation = (scene.max(-1) - scene.min(-1)).mean()
    return float(gray.mean()), float(gray.std(axis=(1, 2)).mean()), float(saturation)


def test_bad_visibility_is_darker_or_lower_contrast():
    good = [_scene_stats(render(seed=s, visibility="good")) for s in range(3)]
    atmospheres = set()
    for seed in range(6):
        atmospheres.add(
            gen.Scene(
                make_labels(visibility="bad"), np.random.default_rng(seed)
            ).atmosphere
        )
        mean, std, saturation = _scene_stats(render(seed=seed, visibility="bad"))
        darker = mean < 0.7 * min(m for m, _, _ in good)
        flatter = std < 0.8 * min(s for _, s, _ in good)
        assert darker or flatter
        assert saturation < 0.8 * min(sat for _, _, sat in good)
    assert atmospheres == {"fog", "night"}  # both kinds of bad visibility are exercised


def test_speeding_puts_a_long_red_bar_in_the_hud():
    hud = slice(gen.HUD_TOP, gen.HEIGHT)
    for seed in range(2):
        speeding = render(seed=seed, rule_violations=["speeding"])[:, hud]
        normal = render(seed=seed)[:, hud]
        assert red_fraction(speeding) > 0.25
        assert red_fraction(normal) < 0.02


def test_navigation_icon_shows_the_manoeuvre_in_its_colour():
    nav = (slice(None), slice(gen.HUD_TOP, gen.HEIGHT), slice(gen.NAV_X0, gen.NAV_X1 + 1))
    for action, colour in gen.NAV_COLOURS.items():
        frames = render(intended_driving_action=action)[nav].astype(int)
        close = np.abs(frames - np.array(colour)).sum(-1) < 60
        assert close.mean() > 0.15, action
        for other, other_colour in gen.NAV_COLOURS.items():
            if other != action:
                assert (np.abs(frames - np.array(other_colour)).sum(-1) < 60).mean() < 0.02


def test_signs_appear_only_with_their_violation():
    top_left = (slice(None), slice(0, 36), slice(0, 45))
    top_right = (slice(None), slice(0, 36), slice(115, 160))

    def yellow_fraction(region):
        r, g, b = region[..., 0], region[..., 1], region[..., 2]
        return float(np.mean((r > 200) & (g > 150) & (b < 90)))

    for visibility in ("good", "bad"):
        stop = render(rule_violations=["ignoring_traffic_signs"], visibility=visibility)
        yield_ = render(rule_violations=["failure_to_yield"], visibility=visibility)
        none = render(visibility=visibility)
        assert red_fraction(stop[top_left]) > 0.15 > red_fraction(none[top_left]) + 0.1
        assert (
            yellow_fraction(yield_[top_right]) > 0.03 > yellow_fraction(none[top_right])
        )


def test_hazard_car_is_red_and_only_a_collision_fills_the_centre():
    late, rows, cols = slice(16, gen.IMPACT_FRAME), slice(30, 80), slice(60, 100)
    collision = render(event_type="collision")
    near_miss = render(event_type="near_miss")
    no_incident = render(event_type="no_incident", traffic_density="high")
    assert red_fraction(collision[late, rows, cols]) > 0.3
    assert red_fraction(near_miss[:, rows, cols]) < 0.02  # never over the centre
    assert red_fraction(near_miss[:, : gen.HUD_TOP]) > 0.03  # but there, off-centre
    assert (
        red_fraction(no_incident[:, : gen.HUD_TOP]) < 0.005
    )  # other cars are never red
    # Impact flash: the last frames of a collision are much brighter in the middle.
    assert collision[-1][40:70, 60:100].mean() > collision[0][40:70, 60:100].mean() + 40


def test_road_curves_towards_the_turn():
    def road_centre_near_horizon(clip):
        # Grey road pixels in the band just below the horizon, averaged over the clip.
        band = clip[:, gen.HORIZON_Y + 4 : gen.HORIZON_Y + 14]
        spread = band.max(-1) - band.min(-1)
        road = (spread < 25) & (band.mean(-1) > 70) & (band.mean(-1) < 130)
        xs = np.nonzero(road)[-1]
        return xs.mean()

    left = road_centre_near_horizon(render(intended_driving_action="turn_left"))
    right = road_centre_near_horizon(render(intended_driving_action="turn_right"))
    straight = road_centre_near_horizon(render(intended_driving_action="change_lanes"))
    assert left < straight - 15 < right - 30


def test_high_density_draws_many_more_cars():
    for seed in range(3):
        low_scene = gen.Scene(
            make_labels(traffic_density="low"), np.random.default_rng(seed)
        )
        high_scene = gen.Scene(
            make_labels(traffic_density="high"), np.random.default_rng(seed)
        )
        assert len(low_scene.traffic) <= 1 and len(high_scene.traffic) >= 5
        # Same seed: same background nuisance, so the pixels that differ are the extra cars.
        high = render(seed=seed, traffic_density="high")[
            :, gen.HORIZON_Y + 3 : gen.HUD_TOP
        ]
        low = render(seed=seed, traffic_density="low")[
            :, gen.HORIZON_Y + 3 : gen.HUD_TOP
        ]
        changed = np.abs(high - low).max(-1) > 30
        assert changed.mean() > 0.08


# ---------------------------------------------------------------------------- difficulty, split sizes


def test_difficulty_zero_is_byte_identical_to_the_bundle(tmp_path):
    """The bundle was made with --seed 1234 --count 300 (its README): at difficulty 0 the plan and
    the first clips' bytes are unchanged, and no extra random number is drawn."""
    plan = gen.plan_dataset(1234, 300)
    bundled = read_metadata(SAMPLES)
    assert [gen.metadata_record(entry) for entry in plan] == bundled
    assert plan == gen.plan_dataset(1234, 300, 30, 30, label_noise=0.0)
    gen.render_all(plan[:2], tmp_path, workers=1, difficulty=0.0)
    for entry in plan[:2]:
        assert (tmp_path / entry["video"]).read_bytes() == (SAMPLES / entry["video"]).read_bytes()
    assert gen.Difficulty.from_level(0) == gen.Difficulty()


def test_val_and_test_counts_are_exact_and_stratified():
    plan = gen.plan_dataset(7, 700, 200, 200)
    splits = [entry["split"] for entry in plan]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (300, 200, 200)
    for split in ("val", "test"):
        events = [e["labels"]["event_type"] for e in plan if e["split"] == split]
        assert all(60 <= events.count(event) <= 73 for event in gen.EVENT_TYPES)
    # the sizes move clips between splits, never the labels or the render seeds
    default = gen.plan_dataset(7, 700)
    assert [(e["labels"], e["render_seed"]) for e in plan] == [(e["labels"], e["render_seed"]) for e in default]
    assert [e["split"] for e in default].count("val") == 70


def test_split_flags_are_checked(tmp_path, capsys):
    args = gen.parse_args(["--count", "8", "--val", "3", "--test", "0", "--out", str(tmp_path)])
    assert gen.split_sizes(args.count, args.val, args.test) == (3, 0)
    for bad in (["--val", "5", "--test", "4"], ["--val", "-1"], ["--difficulty", "1.5"], ["--workers", "0"]):
        with pytest.raises(SystemExit):
            gen.parse_args(["--count", "8", "--out", str(tmp_path), *bad])
    capsys.readouterr()


def test_difficulty_changes_the_frames_and_is_deterministic():
    labels = make_labels(event_type="collision", rule_violations=["speeding"], visibility="bad")
    hard = [gen.render_clip(labels, np.random.default_rng(4), gen.Difficulty.from_level(1.0)) for _ in range(2)]
    easy = np.stack(gen.render_clip(labels, np.random.default_rng(4))).astype(np.float32)
    assert np.array_equal(np.stack(hard[0]), np.stack(hard[1]))
    assert np.abs(np.stack(hard[0]).astype(np.float32) - easy).mean() > 5
    # a harder clip's noise is stronger: compare the flat dashboard background left of the HUD ticks
    hud_bg = (slice(None), slice(gen.HUD_TOP + 1, gen.HEIGHT - 3), slice(gen.NAV_X0 - 5, gen.NAV_X0 - 1))
    assert np.stack(hard[0])[hud_bg].astype(np.float32).std() > 2 * easy[hud_bg].std()


def test_label_noise_replaces_labels_at_about_its_rate():
    plan = gen.plan_dataset(3, 1000, label_noise=0.1)
    for field in ("event_type", "rule_violations", "intended_driving_action", "traffic_density", "visibility"):
        changed = sum(e["labels"][field] != e["true_labels"][field] for e in plan) / len(plan)
        assert 0.06 < changed < 0.14, (field, changed)
    schema = gen.build_schema()
    validator = jsonschema.Draft202012Validator(schema)
    for entry in plan[:200]:
        validator.validate(entry["labels"])
        assert entry["labels"]["caption"] == gen.compose_caption(entry["labels"])
    # the true labels (what the videos show) and the splits are those of the noiseless plan
    clean = gen.plan_dataset(3, 1000)
    assert [(e["true_labels"], e["split"]) for e in plan] == [(e["labels"], e["split"]) for e in clean]


def test_workers_give_the_same_bytes(tmp_path):
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert gen.main(["--seed", "2", "--count", "3", "--difficulty", "0.5", "--workers", str(workers),
                         "--out", str(out)]) == 0
        outs.append(out)
    for name in ("metadata.jsonl", "videos/clip_0000.mp4", "videos/clip_0001.mp4", "videos/clip_0002.mp4"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


def test_a_level_per_part_moves_only_that_parts_knobs_and_every_part_at_d_is_d(tmp_path):
    diff = gen._difficulty
    # the knobs' values at D = 1 as difficulty.py's docstring gives them, and D = 0.3 by the formulas
    # the first hard sets were generated with (so those sets are reproduced bit for bit)
    hard = gen.Difficulty.from_level(1.0)
    assert (hard.extra_noise, hard.wiper_prob, hard.max_blobs, hard.flash_prob, hard.sign_scale,
            hard.curve_scale, hard.low_extra, hard.high_fewer, hard.near_lanes_prob, hard.label_noise) == (
        8.0, 0.35, 4, 0.5, 0.75, 0.4, 1, 2, 0.5, 0.1)
    for d in (0.125, 0.3, 0.375, 0.7):  # counts round half up at 0.125 and 0.375
        some = gen.Difficulty.from_level(d)
        assert (some.extra_noise, some.flash_prob, some.curve_scale, some.sign_scale, some.near_lanes_prob,
                some.haze, some.max_blobs, some.high_fewer) == (
            8.0 * d, 1.0 - 0.5 * d, 1.0 - 0.6 * d, 1.0 - 0.25 * d, 1.0 - 0.5 * d, 0.3 * d,
            int(np.floor(4 * d + 0.5)), int(np.floor(2 * d + 0.5)))
    # every knob belongs to exactly one part, so none stays at its default whatever the parts say
    owned = [k for names in diff.PARTS.values() for k in names]
    assert sorted(owned) == sorted(diff._KNOBS) == sorted(set(vars(gen.Difficulty())) - {"level"})
    for level in (0.3, 1.0):
        assert gen.Difficulty.from_level({part: level for part in diff.PARTS}) == gen.Difficulty.from_level(level)
    only = gen.Difficulty.from_level({"event_type": 1.0})
    moved = {k for k, v in vars(only).items() if v != getattr(gen.Difficulty(), k)}
    assert moved == {"level", *diff.PARTS["event_type"]}
    assert not only.easy and gen.Difficulty.from_level({"visibility": 0}) == gen.Difficulty()
    # the command line: a list of parts, and what it refuses
    assert diff.parse_levels(" event_type=1, visibility=0.5 ") == {"event_type": 1.0, "visibility": 0.5}
    assert diff.parse_levels("0.25") == 0.25
    for bad, said in (("weather=1", "unknown difficulty part"), ("visibility=2", r"\[0, 1\], not 2.0 \(visibility\)"),
                      ("visibility", "neither a level"), ("pixels=1,labels", "write PART=LEVEL"),
                      ("=1", "write PART=LEVEL"), ("cues=", "cues: '' is not a number"),
                      ("cues=1,cues=0", "cues is given twice")):
        with pytest.raises(ValueError, match=said):
            diff.parse_levels(bad)
    with pytest.raises(SystemExit):
        gen.parse_args(["--count", "8", "--out", str(tmp_path), "--difficulty", "weather=1"])
    # a clip rendered with every part at D is the clip of D
    entry = gen.plan_dataset(5, 1)[0]
    every = ",".join(f"{part}=0.5" for part in diff.PARTS)
    gen.render_all([entry], tmp_path / "one", difficulty=0.5)
    gen.render_all([entry], tmp_path / "parts", difficulty=diff.parse_levels(every))
    assert (tmp_path / "one" / entry["video"]).read_bytes() == (tmp_path / "parts" / entry["video"]).read_bytes()
