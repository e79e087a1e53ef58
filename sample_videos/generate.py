"""Generate synthetic dashcam clips with JSON labels for the Video VLM Workbench.

Every label is *caused* by something large and colour-coded in (almost) every frame, so that a tiny
vision-language model that sees 8 downscaled frames can learn it:

    visibility               good: bright day, blue sky  | bad: grey fog wash or dark night
    traffic_density          high: 6-8 coloured cars      | low: zero or one car
    intended_driving_action  turn_left / turn_right: the road curves left / right, and the
                             navigation display in the dashboard shows a green / blue arrow
                             change_lanes: straight road, dashed lane line up the centre, shifting;
                             a yellow lane-change icon
    event_type               collision: red car ahead grows to fill the frame, then a flash + cracks
                             near_miss: red car cuts in beside the centre, large but never central
                             no_incident: no red car at all (other cars are never red)
    rule_violations          speeding: long red bar in the bottom HUD (short white bar otherwise)
                             failure_to_yield: yellow inverted triangle with red border, top-right
                             ignoring_traffic_signs: red octagon STOP sign, top-left

--difficulty D (0 to 1, default 0) makes that harder for an evaluation set whose accuracy is not
~100%: more pixel noise, a wiper band and dirt blobs over the view, a red car and signs that appear
later and are smaller or fainter, weaker turn / fog / traffic-count / speed-bar cues, and label noise
(each field's label replaced by another value with chance 0.1 D). Every knob and its formula is in
difficulty.py, beside this file. At 0 the output is byte-identical to earlier versions. A level per
part (`--difficulty event_type=1,visibility=1,intended_driving_action=0.5`) makes some labels' cues
harder than others'.

Usage:  python sample_videos/generate.py --seed 1234 --count 300 --out sample_videos
        python sample_videos/generate.py --seed 7 --count 700 --val 200 --test 200 --difficulty 1 --out /tmp/hard

--val / --test set the split sizes in clips (default 10% each, stratified by event type); --workers
renders in parallel processes (same bytes for any number).

Only numpy, OpenCV (drawing into arrays) and PyAV (H.264 writing) are used.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def _load_sibling(name: str):
    """Import sample_videos/<name>.py both when this file runs as a script and when it is loaded by
    path (as the tests do): registered under a name of its own, so workers and dataclasses find it."""
    module_name = f"sample_videos_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


_difficulty = _load_sibling("difficulty")
Difficulty, ClipExtras = _difficulty.Difficulty, _difficulty.ClipExtras

# --------------------------------------------------------------------------------------------------
# Label space
# --------------------------------------------------------------------------------------------------

EVENT_TYPES = ("collision", "near_miss", "no_incident")
RULE_VIOLATIONS = ("speeding", "failure_to_yield", "ignoring_traffic_signs")
DRIVING_ACTIONS = ("turn_left", "turn_right", "change_lanes")
TRAFFIC_DENSITIES = ("low", "high")
VISIBILITIES = ("good", "bad")
VIOLATION_PROBABILITY = 0.35

LABEL_FIELDS = (
    "caption",
    "event_type",
    "rule_violations",
    "intended_driving_action",
    "traffic_density",
    "visibility",
)

SPLIT_FRACTIONS = {"val": 0.1, "test": 0.1}  # the rest is train

# --------------------------------------------------------------------------------------------------
# Video geometry
# --------------------------------------------------------------------------------------------------

WIDTH, HEIGHT = 160, 96
FPS = 10
N_FRAMES = 30  # 3 s
CENTER_X = WIDTH / 2
HORIZON_Y = 34  # nominal horizon row (jittered per clip)
ROAD_BOTTOM_Y = 78  # where the road meets the dashboard strip
HUD_TOP = 78  # bottom strip: speedometer bar (left) and navigation display (right)

# x264 settings: ~2 keyframes per 30-frame clip (GOP 15, no scene-cut keyframes), single-threaded.
# mbtree=0: with x264's macroblock-tree rate control on, encoding the same frames twice in one process
# gave different bytes and pixels depending on heap state (apparently an uninitialised read); off, the
# output is reproducible.
CRF = 28
PRESET = "medium"
GOP = 15
X264_PARAMS = "mbtree=0:scenecut=0"

# Road model: screen x of lateral position u (in lane widths) at depth s (0 = horizon, 1 = bottom)
#   x = center + curve(s) + (u - ego_u) * lane_px * s
CURVE_PX = 75.0  # horizontal offset of the vanishing point at full curve strength
CURVE_POWER = 1.0  # shape of the bend: bigger = straighter near the car
CURVE_START, CURVE_END = 1.0, 1.0  # curve strength grows over the clip
LANE_CHANGE_SHIFT = 0.28  # ego lateral offset (lane widths) swings from -this to +this
LINE_HALF_WIDTH = (0.7, 2.6)  # lane-line half width in px: base + per unit depth
DASH_FREQ, DASH_DUTY = 2.2, 0.5  # dashes per unit of inverse depth

# Cars: width in lane widths, height/width ratio
CAR_WIDTH_LANES = 0.74
CAR_ASPECT = 0.72
# Never red (reserved for the hazard car) and never a background colour (sky blue, grass green,
# road grey, line white): a tiny model tells cars from scenery by colour long before it learns shape.
OTHER_CAR_COLOURS = (
    (20, 40, 130),  # navy
    (120, 50, 170),  # purple
    (215, 60, 190),  # magenta
    (20, 190, 200),  # cyan
    (250, 140, 20),  # orange
)
HAZARD_COLOUR = (235, 25, 25)  # bright red
TAIL_LIGHT_COLOUR = (255, 175, 40)  # amber, not red

# Hazard car timing / size
HAZARD_START_FRAME = 0
COLLISION_WIDTH = (24.0, 156.0)  # px, grows over the clip
COLLISION_GROWTH_POWER = 1.4
IMPACT_FRAME = 22  # from here on: flash and cracked glass
NEAR_MISS_DEPTH = (0.45, 1.15)  # depth s grows over the clip
NEAR_MISS_MIN_GAP = 8  # px between the near-miss car and the frame centre, always

# Signs (screen positions of the sign centres at scale 1)
SIGN_SIZE = 30  # px across
SIGN_TOP_Y = 20
STOP_X = 22
YIELD_X = WIDTH - 22
SIGN_GROWTH = (0.9, 1.15)
STOP_RED = (225, 20, 30)
YIELD_FILL = (255, 195, 0)
YIELD_BORDER = (225, 20, 30)
POLE_COLOUR = (90, 90, 90)

# HUD speedometer strip
HUD_BG = (25, 25, 28)
HUD_X0 = 6
SPEEDING_BAR = ((225, 30, 30), (76, 86))  # colour, length range px
NORMAL_BAR = ((225, 225, 225), (20, 34))
# Navigation display at the right of the dashboard: the manoeuvre the driver is making, as a
# coloured icon in a fixed place (the road shape shows it too, but a tiny model reads a fixed
# coloured icon far more reliably than road geometry).
NAV_X0, NAV_X1 = 100, 156
NAV_COLOURS = {"turn_left": (40, 220, 60), "turn_right": (60, 120, 255), "change_lanes": (255, 220, 0)}

# Atmosphere
FOG_COLOUR = np.array([175, 178, 182], dtype=np.float32)
FOG_BACKGROUND, FOG_OBJECTS = 0.7, 0.3  # blend fraction towards fog colour
NIGHT_BACKGROUND = 0.2  # brightness factor of sky, ground and road at night
NIGHT_CARS, NIGHT_SIGNS = 0.75, 0.95  # cars are lit, signs are reflective
HEADLIGHT_GAIN = 2.2  # extra brightness of the road in the headlight pool at night
NOISE_SIGMA = 2.0
JITTER_PX = 1


# --------------------------------------------------------------------------------------------------
# Labels, captions, splits
# --------------------------------------------------------------------------------------------------


def sample_labels(rng: np.random.Generator) -> dict:
    """Sample every label field independently (caption is derived from the others)."""
    labels = {
        "event_type": EVENT_TYPES[rng.integers(len(EVENT_TYPES))],
        "rule_violations": [
            v for v in RULE_VIOLATIONS if rng.random() < VIOLATION_PROBABILITY
        ],
        "intended_driving_action": DRIVING_ACTIONS[rng.integers(len(DRIVING_ACTIONS))],
        "traffic_density": TRAFFIC_DENSITIES[rng.integers(len(TRAFFIC_DENSITIES))],
        "visibility": VISIBILITIES[rng.integers(len(VISIBILITIES))],
    }
    labels["caption"] = compose_caption(labels)
    return {field: labels[field] for field in LABEL_FIELDS}


_CAPTION_VISIBILITY = {"good": "Clear daytime drive", "bad": "Low-visibility drive"}
_CAPTION_DENSITY = {"low": "in light traffic", "high": "in heavy traffic"}
_CAPTION_ACTION = {
    "turn_left": "the driver turns left",
    "turn_right": "the driver turns right",
    "change_lanes": "the driver changes lanes",
}
_CAPTION_EVENT = {
    "collision": "a car ahead brakes and is hit",
    "near_miss": "a car cuts in and is narrowly avoided",
    "no_incident": "no incident occurs",
}
_CAPTION_VIOLATION = {
    "speeding": "speeds",
    "failure_to_yield": "fails to yield",
    "ignoring_traffic_signs": "ignores a stop sign",
}


def compose_caption(labels: dict) -> str:
    """Deterministic short caption built from the label fields only (< 30 words)."""
    violations = [v for v in RULE_VIOLATIONS if v in labels["rule_violations"]]
    if not violations:
        rules = "no rules are broken"
    else:
        phrases = [_CAPTION_VIOLATION[v] for v in violations]
        joined = (
            phrases[0]
            if len(phrases) == 1
            else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        )
        rules = "the driver " + joined
    parts = [
        f"{_CAPTION_VISIBILITY[labels['visibility']]} {_CAPTION_DENSITY[labels['traffic_density']]}",
        _CAPTION_ACTION[labels["intended_driving_action"]],
        _CAPTION_EVENT[labels["event_type"]],
        rules,
    ]
    return "; ".join(parts) + "."


def split_sizes(count: int, n_val: int | None = None, n_test: int | None = None) -> tuple[int, int]:
    """(val, test) clip counts: the given ones, else 10% each of `count` (at least 1 from 3 clips)."""
    default_val = int(count * SPLIT_FRACTIONS["val"] + 0.5)
    default_test = int(count * SPLIT_FRACTIONS["test"] + 0.5)
    if count >= 3:
        default_val, default_test = max(default_val, 1), max(default_test, 1)
    n_val = default_val if n_val is None else n_val
    n_test = default_test if n_test is None else n_test
    if n_val < 0 or n_test < 0 or n_val + n_test > count:
        raise ValueError(f"val {n_val} + test {n_test} clips do not fit in {count}")
    return n_val, n_test


def assign_splits(event_types: list[str], rng: np.random.Generator,
                  n_val: int | None = None, n_test: int | None = None) -> list[str]:
    """train/val/test by a seeded shuffle, stratified by event type: `n_val` and `n_test` clips
    (default 10% each, see `split_sizes`), the rest train.

    Within each event type the clips are shuffled and given evenly spread ranks in [0, 1); taking
    clips in rank order then gives each split a share of every event type.
    """
    n = len(event_types)
    n_val, n_test = split_sizes(n, n_val, n_test)
    ranked = []
    for event in EVENT_TYPES:
        members = [i for i, e in enumerate(event_types) if e == event]
        order = rng.permutation(len(members))
        offset = rng.random()
        for rank, k in enumerate(order):
            ranked.append(((rank + offset) / len(members), rng.random(), members[k]))
    ranked.sort()
    splits = ["train"] * n
    for position, (_, _, index) in enumerate(ranked):
        if position < n_val:
            splits[index] = "val"
        elif position < n_val + n_test:
            splits[index] = "test"
    return splits


def build_schema() -> dict:
    """JSON Schema (draft 2020-12) for one label object."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Dashcam clip labels",
        "type": "object",
        "properties": {
            "caption": {
                "type": "string",
                "description": "One-sentence description of the clip.",
            },
            "event_type": {
                "type": "string",
                "enum": list(EVENT_TYPES),
                "description": "Most serious safety event in the clip.",
            },
            "rule_violations": {
                "type": "array",
                "items": {"type": "string", "enum": list(RULE_VIOLATIONS)},
                "uniqueItems": True,
                "description": "Traffic rules the ego driver breaks (may be empty).",
            },
            "intended_driving_action": {
                "type": "string",
                "enum": list(DRIVING_ACTIONS),
                "description": "Manoeuvre the ego driver is making.",
            },
            "traffic_density": {
                "type": "string",
                "enum": list(TRAFFIC_DENSITIES),
                "description": "Amount of other traffic on the road.",
            },
            "visibility": {
                "type": "string",
                "enum": list(VISIBILITIES),
                "description": "Good in clear daylight; bad in fog or at night.",
            },
        },
        "required": list(LABEL_FIELDS),
        "additionalProperties": False,
    }


def plan_dataset(seed: int, count: int, n_val: int | None = None, n_test: int | None = None,
                 label_noise: float = 0.0) -> list[dict]:
    """Labels, split and per-clip render seed for every clip; no rendering. The split sizes change
    which clips are val/test, never the labels or render seeds.

    `true_labels` are what the video shows; `labels` (written to metadata.jsonl) are the same unless
    `label_noise` > 0: then each field is replaced by another allowed value with that chance, drawn
    from a child generator (the true labels, splits and seeds do not change), and the caption is
    rebuilt from the final fields."""
    rng = np.random.default_rng(seed)
    all_labels = [sample_labels(rng) for _ in range(count)]
    splits = assign_splits([lab["event_type"] for lab in all_labels], rng, n_val, n_test)
    clip_seeds = rng.integers(0, 2**32, size=count, dtype=np.uint64)
    final = all_labels
    if label_noise > 0:
        noise_rng = rng.spawn(1)[0]
        final = [noisy_labels(labels, label_noise, noise_rng) for labels in all_labels]
    return [
        {
            "video": f"videos/clip_{i:04d}.mp4",
            "split": splits[i],
            "labels": final[i],
            "true_labels": all_labels[i],
            "render_seed": int(clip_seeds[i]),
        }
        for i in range(count)
    ]


def noisy_labels(labels: dict, p: float, rng: np.random.Generator) -> dict:
    """`labels` with each enum field (and rule_violations) replaced by another value with chance p."""
    choices = {
        "event_type": EVENT_TYPES,
        "rule_violations": RULE_VIOLATIONS,
        "intended_driving_action": DRIVING_ACTIONS,
        "traffic_density": TRAFFIC_DENSITIES,
        "visibility": VISIBILITIES,
    }
    out = _difficulty.corrupt_labels(labels, choices, "rule_violations", p, rng)
    out["caption"] = compose_caption(out)
    return {field: out[field] for field in LABEL_FIELDS}


# --------------------------------------------------------------------------------------------------
# Scene parameters (nuisance variation) and the road model
# --------------------------------------------------------------------------------------------------


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _px(v) -> int:
    """Nearest integer pixel coordinate (round half to even, like round())."""
    return int(np.rint(v))


def _clip_colour(c) -> tuple[int, int, int]:
    return tuple(
        int(v) for v in np.clip(np.round(np.asarray(c, dtype=np.float32)), 0, 255)
    )


class Scene:
    """Per-clip constants: the labels, the atmosphere and the random nuisance parameters."""

    def __init__(self, labels: dict, rng: np.random.Generator, knobs: Difficulty | None = None,
                 extras: ClipExtras | None = None):
        self.labels = labels
        self.rng = rng
        self.knobs = knobs or Difficulty()  # the easy clips by default
        self.extras = extras or ClipExtras()
        self.atmosphere = (
            "day"
            if labels["visibility"] == "good"
            else str(rng.choice(["fog", "night"]))
        )
        self.horizon = HORIZON_Y + int(rng.integers(-2, 3))
        self.lane_px = float(
            rng.uniform(54, 68)
        )  # lane width at the bottom of the road
        self.sky_top = np.array(
            [rng.uniform(70, 110), rng.uniform(140, 175), rng.uniform(225, 250)]
        )
        self.sky_bottom = np.array(
            [rng.uniform(170, 200), rng.uniform(205, 225), rng.uniform(235, 252)]
        )
        self.ground = np.array(
            [rng.uniform(60, 120), rng.uniform(120, 160), rng.uniform(40, 70)]
        )
        self.road = np.full(3, rng.uniform(85, 110))
        self.line = np.full(3, rng.uniform(225, 250))
        self.dash_speed = float(rng.uniform(0.15, 0.3))  # dash phase advance per frame
        action = labels["intended_driving_action"]
        self.curve_sign = {"turn_left": -1.0, "turn_right": 1.0, "change_lanes": 0.0}[
            action
        ]
        self.change_dir = float(rng.choice([-1.0, 1.0]))
        if action == "change_lanes":
            self.lane_bounds = (
                -2.0,
                -1.0,
                0.0,
                1.0,
                2.0,
            )  # 4 lanes, ego straddles u = 0
            self.lane_centres = (-1.5, -0.5, 0.5, 1.5)
        else:
            self.lane_bounds = (
                -1.5,
                -0.5,
                0.5,
                1.5,
            )  # 3 lanes, ego centred in the middle one
            self.lane_centres = (-1.0, 0.0, 1.0)
        self.edge_bounds = (self.lane_bounds[0], self.lane_bounds[-1])
        self.jitter = rng.integers(-JITTER_PX, JITTER_PX + 1, size=(N_FRAMES, 2))
        self.traffic = self._plan_traffic()
        self.near_miss_side = float(rng.choice([-1.0, 1.0]))
        self.speed_bar = int(
            rng.integers(*self.knobs.bar_range(self.speeding, (SPEEDING_BAR if self.speeding else NORMAL_BAR)[1]))
        )
        self.sign_jitter = rng.integers(-2, 3, size=4)

    @property
    def speeding(self) -> bool:
        return "speeding" in self.labels["rule_violations"]

    def _plan_traffic(self) -> list[dict]:
        """Other (non-red) cars: 6-8 large ones for high density, none or one far car for low.

        Only slots whose car stays on screen are used, so the count is visible in every frame.
        """
        rng, knobs = self.rng, self.knobs
        if self.labels["traffic_density"] == "high":
            n = int(rng.integers(6 - knobs.high_fewer, 9 - knobs.high_fewer))
            depths = (0.38, 0.52, 0.68, 0.84)
        else:
            n = int(rng.integers(0, 2 + knobs.low_extra))
            depths = (0.3,) if knobs.low_extra == 0 else (0.3, 0.38)
        # Keep the ego lane near the car free for the hazard car.
        ego_u = self.ego_u(0)
        slots = [(u, s) for u in self.lane_centres for s in depths
                 if not (abs(u - ego_u) < 0.6 and s > 0.4) and self._on_screen(u, s)]
        if self.labels["traffic_density"] == "high" and self.extras.near_lanes:
            # the two neighbouring lanes right beside the ego car are always full in heavy traffic
            near = [(u, s) for (u, s) in slots if s == depths[-1] and abs(u - ego_u) < 1.6]
            rest = [slot for slot in slots if slot not in near]
            chosen = near + [rest[k] for k in rng.permutation(len(rest))[: max(n - len(near), 0)]]
        else:
            chosen = [slots[k] for k in rng.permutation(len(slots))[:n]]
        cars = []
        for u, s in chosen:
            cars.append(
                {
                    "u": u + float(rng.uniform(-0.08, 0.08)),
                    "s": s + float(rng.uniform(-0.03, 0.03)),
                    "ds": float(rng.uniform(-0.004, 0.004)),  # slow drift in depth
                    "colour": OTHER_CAR_COLOURS[rng.integers(len(OTHER_CAR_COLOURS))],
                }
            )
        return cars

    def _on_screen(self, u: float, s: float) -> bool:
        half = CAR_WIDTH_LANES * self.lane_px * s / 2
        xs = [float(self.screen_x(u, s, f)) for f in (0, N_FRAMES // 2, N_FRAMES - 1)]
        return all(half <= x <= WIDTH - half for x in xs)

    # Road model -----------------------------------------------------------------------------------

    def cue(self, colour):
        """A colour cue (sign, flash, speed bar, navigation icon), faded towards grey on harder clips."""
        return colour if self.knobs.cue_fade == 0 else _difficulty.fade(colour, self.knobs.cue_fade)

    def fog_blend(self, objects: bool) -> float:
        """How far the atmosphere blends background (or objects) towards fog grey: fog, or haze on
        a harder clip's good day."""
        base = FOG_OBJECTS if objects else FOG_BACKGROUND
        if self.atmosphere == "fog":
            return base * (1.0 - self.extras.fog_relief / FOG_BACKGROUND)
        return base * self.extras.haze / FOG_BACKGROUND if self.atmosphere == "day" else 0.0

    def progress(self, f: int) -> float:
        return f / (N_FRAMES - 1)

    def curve_px(self, f: int) -> float:
        return (
            self.curve_sign * CURVE_PX * self.knobs.curve_scale * _lerp(CURVE_START, CURVE_END, self.progress(f))
        )

    def ego_u(self, f: int) -> float:
        if self.labels["intended_driving_action"] != "change_lanes":
            return 0.0
        return self.change_dir * LANE_CHANGE_SHIFT * _lerp(-1.0, 1.0, self.progress(f))

    def depth_of_row(self, y):
        return (np.asarray(y, dtype=np.float32) - self.horizon) / (
            ROAD_BOTTOM_Y - self.horizon
        )

    def row_of_depth(self, s: float) -> float:
        return self.horizon + s * (ROAD_BOTTOM_Y - self.horizon)

    def screen_x(self, u, s, f: int):
        """Screen x of lateral road position u (lane widths) at depth s in frame f."""
        s = np.asarray(s, dtype=np.float32)
        bend = self.curve_px(f) * np.clip(1.0 - s, 0.0, 1.0) ** CURVE_POWER
        return CENTER_X + bend + (u - self.ego_u(f)) * self.lane_px * s


# --------------------------------------------------------------------------------------------------
# Atmosphere: colours of objects under fog / night
# --------------------------------------------------------------------------------------------------


def object_colour(colour, scene: Scene, kind: str) -> tuple[int, int, int]:
    """Colour of a drawn object ('car', 'sign', 'light', 'flash') under the scene's atmosphere."""
    c = np.asarray(colour, dtype=np.float32)
    if scene.fog_blend(True) > 0 and kind != "flash":
        blend = scene.fog_blend(True)
        c = c * (1 - blend) + FOG_COLOUR * blend
    elif scene.atmosphere == "night":
        factor = {"car": NIGHT_CARS, "sign": NIGHT_SIGNS}.get(kind, 1.0)
        c = c * factor
    return _clip_colour(c)


def apply_background_atmosphere(
    img: np.ndarray, scene: Scene, road_mask: np.ndarray
) -> np.ndarray:
    """Fog washes the background towards grey; night darkens it except a headlight pool."""
    out = img.astype(np.float32)
    if scene.fog_blend(False) > 0:  # fog, or haze on a harder clip's good day
        blend = scene.fog_blend(False)
        out = out * (1 - blend) + FOG_COLOUR * blend
    elif scene.atmosphere == "night":
        ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        # Elliptical headlight pool on the road in front of the car.
        d = ((xs - CENTER_X) / 70.0) ** 2 + ((ys - ROAD_BOTTOM_Y) / 30.0) ** 2
        pool = np.clip(1.0 - d, 0.0, 1.0) * road_mask
        out = out * (NIGHT_BACKGROUND + scene.extras.night_lift) * (1.0 + HEADLIGHT_GAIN * pool[..., None])
        out[..., 2] *= 1.15  # slightly blue night
    return out


# --------------------------------------------------------------------------------------------------
# Pure drawing functions (all draw into an RGB uint8 array in place)
# --------------------------------------------------------------------------------------------------


def draw_background(scene: Scene, f: int) -> np.ndarray:
    """Sky gradient, ground, road surface and lane lines, with the atmosphere applied."""
    img = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    ys = np.arange(HEIGHT, dtype=np.float32)
    t_sky = np.clip(ys / max(scene.horizon, 1), 0, 1)[:, None]
    sky = scene.sky_top[None, :] * (1 - t_sky) + scene.sky_bottom[None, :] * t_sky
    img[:] = sky[:, None, :]
    img[scene.horizon :] = scene.ground

    # Road, pixel by pixel: depth s from the row, lateral position u from the column.
    yy, xx = np.mgrid[scene.horizon + 1 : ROAD_BOTTOM_Y + 8, 0:WIDTH].astype(np.float32)
    s = np.maximum(scene.depth_of_row(yy), 1e-3)
    px_per_lane = scene.lane_px * s
    u = (xx - scene.screen_x(0.0, s, f)) / px_per_lane + scene.ego_u(f)
    road = (u >= scene.edge_bounds[0]) & (u <= scene.edge_bounds[1])
    half_width = LINE_HALF_WIDTH[0] + LINE_HALF_WIDTH[1] * s
    dash_on = ((1.0 / s) * DASH_FREQ + scene.dash_speed * f) % 1.0 < DASH_DUTY
    lines = np.zeros_like(road)
    for b in scene.lane_bounds:
        near = np.abs(u - b) * px_per_lane <= half_width
        solid = b in scene.edge_bounds
        lines |= near & (solid | dash_on)
    region = img[scene.horizon + 1 : ROAD_BOTTOM_Y + 8]
    region[road] = scene.road
    region[lines] = scene.line

    road_mask = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    road_mask[scene.horizon + 1 : ROAD_BOTTOM_Y + 8] = road
    return apply_background_atmosphere(img, scene, road_mask)


def draw_car(
    img: np.ndarray,
    cx: float,
    bottom: float,
    width: float,
    colour,
    scene: Scene,
    kind: str = "car",
) -> None:
    """A car seen from behind: body, dark rear window, wheels, amber tail lights."""
    w = max(width, 4.0)
    h = w * CAR_ASPECT
    x0, x1 = _px(cx - w / 2), _px(cx + w / 2)
    y1 = _px(bottom)
    y0 = _px(bottom - h)
    body = object_colour(colour, scene, kind)
    wheel = object_colour((15, 15, 15), scene, kind)
    glass = object_colour(np.asarray(colour, dtype=np.float32) * 0.25 + 20, scene, kind)
    light = object_colour(TAIL_LIGHT_COLOUR, scene, "light")
    wheel_w, wheel_h = max(1, int(w * 0.16)), max(1, int(h * 0.18))
    cv2.rectangle(img, (x0 + 1, y1 - wheel_h), (x0 + 1 + wheel_w, y1), wheel, -1)
    cv2.rectangle(img, (x1 - 1 - wheel_w, y1 - wheel_h), (x1 - 1, y1), wheel, -1)
    cv2.rectangle(
        img, (x0, y0 + int(h * 0.12)), (x1, y1 - wheel_h // 2), body, -1
    )  # body
    roof_in = int(w * 0.12)
    cv2.rectangle(
        img, (x0 + roof_in, y0), (x1 - roof_in, y0 + int(h * 0.2)), body, -1
    )  # roof
    win_in = int(w * 0.18)
    cv2.rectangle(
        img,
        (x0 + win_in, y0 + int(h * 0.14)),
        (x1 - win_in, y0 + int(h * 0.42)),
        glass,
        -1,
    )  # rear window
    lw, lh = max(1, int(w * 0.14)), max(1, int(h * 0.1))
    ly = y0 + int(h * 0.52)
    cv2.rectangle(img, (x0 + 1, ly), (x0 + 1 + lw, ly + lh), light, -1)
    cv2.rectangle(img, (x1 - 1 - lw, ly), (x1 - 1, ly + lh), light, -1)


def draw_traffic(img: np.ndarray, scene: Scene, f: int) -> None:
    """The non-hazard cars, far ones first."""
    cars = sorted(scene.traffic, key=lambda c: c["s"] + c["ds"] * f)
    for car in cars:
        s = float(np.clip(car["s"] + car["ds"] * f, 0.2, 0.9))
        cx = float(scene.screen_x(car["u"], s, f))
        draw_car(
            img,
            cx,
            scene.row_of_depth(s),
            CAR_WIDTH_LANES * scene.lane_px * s,
            car["colour"],
            scene,
        )


def draw_hazard_car(img: np.ndarray, scene: Scene, f: int) -> None:
    """The red hazard car: straight ahead and growing (collision) or cutting in beside (near miss)."""
    event = scene.labels["event_type"]
    if event == "no_incident" or f < max(HAZARD_START_FRAME, scene.extras.hazard_start):
        return
    p = scene.progress(f)
    if event == "collision":
        width = _lerp(*COLLISION_WIDTH, p**COLLISION_GROWTH_POWER)
        s = width / (CAR_WIDTH_LANES * scene.lane_px)
        cx = float(scene.screen_x(scene.ego_u(f), min(s, 1.0), f))
        cx = _lerp(cx, CENTER_X, min(1.0, p * 1.5))  # converge on the centre of view
        bottom = min(scene.row_of_depth(s), HEIGHT - 1)
    else:  # near miss: cuts in from the side, stays off-centre
        s = _lerp(*NEAR_MISS_DEPTH, p)
        u_rel = scene.near_miss_side * _lerp(1.15, 0.8, min(1.0, p * 1.6))
        width = CAR_WIDTH_LANES * scene.lane_px * s
        cx = float(scene.screen_x(scene.ego_u(f) + u_rel, min(s, 1.0), f))
        min_offset = width / 2 + NEAR_MISS_MIN_GAP
        if scene.near_miss_side > 0:
            cx = max(cx, CENTER_X + min_offset)
        else:
            cx = min(cx, CENTER_X - min_offset)
        bottom = min(scene.row_of_depth(s), HEIGHT - 1)
    colour = HAZARD_COLOUR
    if scene.knobs.hazard_fade > 0:  # harder clips: towards the orange of the other cars
        colour = _difficulty.fade(HAZARD_COLOUR, scene.knobs.hazard_fade, towards=OTHER_CAR_COLOURS[-1])
    draw_car(img, cx, bottom, width, colour, scene)


def _sign_scale(scene: Scene, f: int) -> float:
    return _lerp(*SIGN_GROWTH, scene.progress(f)) * scene.knobs.sign_scale


def draw_pole(img: np.ndarray, x: int, top: int, scene: Scene) -> None:
    bottom = scene.horizon + 14
    cv2.rectangle(
        img,
        (x - 1, top),
        (x + 1, bottom),
        object_colour(POLE_COLOUR, scene, "sign"),
        -1,
    )


def draw_stop_sign(img: np.ndarray, scene: Scene, f: int) -> None:
    """Large red octagon with a white rim and a white bar, on a pole at the top left."""
    k = _sign_scale(scene, f)
    r = SIGN_SIZE / 2 * k
    cx, cy = STOP_X + scene.sign_jitter[0], SIGN_TOP_Y + scene.sign_jitter[1]
    draw_pole(img, cx, int(cy), scene)
    angles = np.pi / 8 + np.arange(8) * np.pi / 4
    outer = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    inner = np.stack(
        [cx + (r - 2.2) * np.cos(angles), cy + (r - 2.2) * np.sin(angles)], 1
    )
    cv2.fillPoly(
        img,
        [np.round(outer).astype(np.int32)],
        object_colour((245, 245, 245), scene, "sign"),
    )
    cv2.fillPoly(
        img, [np.round(inner).astype(np.int32)], object_colour(scene.cue(STOP_RED), scene, "sign")
    )
    bw, bh = r * 0.62, max(1.5, r * 0.16)
    cv2.rectangle(
        img,
        (int(cx - bw), int(cy - bh)),
        (int(cx + bw), int(cy + bh)),
        object_colour((245, 245, 245), scene, "sign"),
        -1,
    )


def draw_yield_sign(img: np.ndarray, scene: Scene, f: int) -> None:
    """Large inverted yellow triangle with a thick red border, on a pole at the top right."""
    k = _sign_scale(scene, f)
    half = SIGN_SIZE / 2 * k * 1.1
    cx, cy = YIELD_X + scene.sign_jitter[2], SIGN_TOP_Y + scene.sign_jitter[3]
    draw_pole(img, cx, int(cy), scene)
    top = cy - half * 0.75
    outer = np.array([[cx - half, top], [cx + half, top], [cx, top + 1.75 * half]])
    centroid = outer.mean(0)
    inner = centroid + (outer - centroid) * 0.62
    cv2.fillPoly(
        img,
        [np.round(outer).astype(np.int32)],
        object_colour(scene.cue(YIELD_BORDER), scene, "sign"),
    )
    cv2.fillPoly(
        img,
        [np.round(inner).astype(np.int32)],
        object_colour(scene.cue(YIELD_FILL), scene, "sign"),
    )


def draw_impact(
    img: np.ndarray, scene: Scene, f: int, rng: np.random.Generator
) -> None:
    """Collision: bright yellow-white starburst and cracked-glass lines over the frame."""
    if scene.labels["event_type"] != "collision" or f < IMPACT_FRAME or not scene.extras.flash:
        return
    cx, cy = CENTER_X + rng.uniform(-4, 4), 54 + rng.uniform(-3, 3)
    n_points = 12
    angles = np.arange(2 * n_points) * np.pi / n_points + rng.uniform(
        0, np.pi / n_points
    )
    radii = np.where(np.arange(2 * n_points) % 2 == 0, 40.0, 17.0) * rng.uniform(
        0.9, 1.1, 2 * n_points
    )
    star = np.stack(
        [cx + radii * np.cos(angles), cy + 0.75 * radii * np.sin(angles)], 1
    )
    cv2.fillPoly(
        img,
        [np.round(star).astype(np.int32)],
        object_colour(scene.cue((255, 230, 60)), scene, "flash"),
    )
    cv2.circle(
        img, (int(cx), int(cy)), 11, object_colour(scene.cue((255, 255, 240)), scene, "flash"), -1
    )
    crack = object_colour(scene.cue((250, 250, 250)), scene, "flash")
    for a in np.linspace(0, 2 * np.pi, 9, endpoint=False) + rng.uniform(0, 0.6):
        x, y = cx, cy
        for _ in range(4):
            a += rng.uniform(-0.35, 0.35)
            nx, ny = x + 22 * np.cos(a), y + 22 * np.sin(a)
            cv2.line(img, (int(x), int(y)), (int(nx), int(ny)), crack, 1)
            x, y = nx, ny


def draw_hud(img: np.ndarray, scene: Scene, f: int) -> None:
    """Dashboard strip: speedometer bar (long red when speeding, short white otherwise) and the
    navigation display's manoeuvre icon (left arrow, right arrow, or lane-change icon)."""
    cv2.rectangle(img, (0, HUD_TOP), (WIDTH - 1, HEIGHT - 1), HUD_BG, -1)
    colour = _clip_colour(scene.cue((SPEEDING_BAR if scene.speeding else NORMAL_BAR)[0]))
    length = scene.speed_bar + _px(2 * np.sin(f * 0.7))
    cv2.rectangle(img, (HUD_X0, HUD_TOP + 3), (HUD_X0 + length, HEIGHT - 4), colour, -1)
    for tick in range(HUD_X0, NAV_X0 - 6, 20):  # scale ticks
        cv2.line(img, (tick, HEIGHT - 2), (tick, HEIGHT - 1), (120, 120, 120), 1)
    action = scene.labels["intended_driving_action"]
    if scene.extras.nav_on is None or scene.extras.nav_on[f]:  # harder clips: the display flickers
        draw_nav_icon(img, action, _clip_colour(scene.cue(NAV_COLOURS[action])))


def draw_nav_icon(img: np.ndarray, action: str, colour=None) -> None:
    colour = NAV_COLOURS[action] if colour is None else colour
    top, bottom = HUD_TOP + 2, HEIGHT - 3
    mid_y = (top + bottom) // 2
    if action == "change_lanes":  # two lane lines with a diagonal between them
        cv2.rectangle(img, (NAV_X0 + 8, top), (NAV_X1 - 8, bottom), colour, -1)
        cv2.line(img, (NAV_X0 + 14, bottom), (NAV_X1 - 14, top), HUD_BG, 2)
        return
    left = action == "turn_left"
    tip_x = NAV_X0 if left else NAV_X1
    base_x = NAV_X0 + 14 if left else NAV_X1 - 14
    tail_x = NAV_X1 - 4 if left else NAV_X0 + 4
    cv2.fillConvexPoly(img, np.array([[tip_x, mid_y], [base_x, top], [base_x, bottom]], np.int32), colour)
    cv2.rectangle(img, (min(base_x, tail_x), mid_y - 3), (max(base_x, tail_x), mid_y + 3), colour, -1)


def render_clip(labels: dict, rng: np.random.Generator, difficulty: Difficulty | None = None) -> list[np.ndarray]:
    """Render the N_FRAMES RGB uint8 frames (HEIGHT×WIDTH×3) of one clip with the given labels.

    A harder clip's extra random choices come from a child generator (`rng.spawn`), which leaves
    `rng`'s own stream alone; the easy clips (difficulty None or 0) draw nothing extra."""
    knobs = difficulty or Difficulty()
    extras = None if knobs.easy else _difficulty.draw_extras(knobs, rng.spawn(1)[0], N_FRAMES, WIDTH, HUD_TOP)
    scene = Scene(labels, rng, knobs, extras)
    violations = labels["rule_violations"]
    frames = []
    for f in range(N_FRAMES):
        background = draw_background(scene, f)
        img = np.ascontiguousarray(np.clip(background, 0, 255).astype(np.uint8))
        draw_traffic(img, scene, f)
        draw_hazard_car(img, scene, f)
        if "ignoring_traffic_signs" in violations:
            draw_stop_sign(img, scene, f)
        if "failure_to_yield" in violations:
            draw_yield_sign(img, scene, f)
        draw_impact(img, scene, f, rng)
        dx, dy = scene.jitter[f]
        img = np.roll(img, shift=(int(dy), int(dx)), axis=(0, 1))  # camera shake
        if not knobs.easy:  # dirt and the wiper are on the glass: they do not shake either
            _difficulty.occlude(img, scene.extras, f, HUD_TOP)
        draw_hud(img, scene, f)  # the dashboard does not shake
        noisy = img.astype(np.float32) + rng.normal(0, NOISE_SIGMA + knobs.extra_noise, img.shape)
        frames.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return frames


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: int = FPS) -> None:
    """Write RGB frames as browser-playable H.264 (yuv420p) MP4 with PyAV; same frames, same bytes."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264",
            rate=Fraction(fps, 1),
            options={
                "crf": str(CRF),
                "preset": PRESET,
                "threads": "1",
                "x264-params": X264_PARAMS,
            },
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = GOP
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
                format="yuv420p"
            )
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def metadata_record(entry: dict) -> dict:
    record = {"video": entry["video"], "split": entry["split"]}
    record.update({field: entry["labels"][field] for field in LABEL_FIELDS})
    return record


def _write_text(path: Path, text: str) -> None:
    with open(
        path, "w", encoding="utf-8", newline="\n"
    ) as fh:  # same bytes on every OS
        fh.write(text)


def _render_to_file(job: tuple[dict, str, float | dict]) -> None:
    """Render and write one planned clip (a top-level function, so worker processes can run it)."""
    entry, out, level = job
    rng = np.random.default_rng(entry["render_seed"])
    frames = render_clip(entry["true_labels"], rng, Difficulty.from_level(level))
    write_mp4(frames, Path(out) / entry["video"], FPS)


def render_all(plan: list[dict], out: Path, workers: int = 1, difficulty: float | dict = 0.0) -> None:
    """Write every planned clip's video. Each clip depends only on its own entry (labels and render
    seed) and the difficulty (a level, or a level per part: difficulty.py), so the bytes are the same
    whatever the number of worker processes."""
    for folder in {(out / entry["video"]).parent for entry in plan}:
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(entry, str(out), difficulty) for entry in plan]
    if workers <= 1:
        for job in jobs:
            _render_to_file(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork where there is one: the workers start from this process as it is. Jobs name their function
    # by module name, so a generate.py loaded from its path must be in sys.modules (the tests do so).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for _ in pool.map(_render_to_file, jobs, chunksize=4):
            pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--count", type=int, default=300, help="number of clips (default 300)"
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--val", type=int, default=None,
                        help="number of val clips (default 10%% of --count)")
    parser.add_argument("--test", type=int, default=None,
                        help="number of test clips (default 10%% of --count)")
    parser.add_argument("--difficulty", default="0",
                        help="0 (default: every cue large and clear) to 1 (hard: noise, occluders, "
                             "late/faint events, weaker cues, 10%% label noise per field), or a level per "
                             "part, e.g. event_type=1,visibility=1,pixels=0.5; see difficulty.py")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes rendering clips in parallel (default 1; same bytes for any number)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        args.difficulty = _difficulty.parse_levels(args.difficulty)
    except ValueError as exc:
        parser.error(f"--difficulty: {exc}")
    try:
        split_sizes(args.count, args.val, args.test)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    knobs = Difficulty.from_level(args.difficulty)
    plan = plan_dataset(args.seed, args.count, args.val, args.test, knobs.label_noise)
    render_all(plan, out, args.workers, args.difficulty)
    lines = [json.dumps(metadata_record(entry), ensure_ascii=False) for entry in plan]
    _write_text(out / "metadata.jsonl", "\n".join(lines) + "\n")
    _write_text(out / "schema.json", json.dumps(build_schema(), indent=2) + "\n")
    print(f"wrote {len(plan)} clips to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
