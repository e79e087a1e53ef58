"""The --difficulty knob of generate.py: a level D in [0, 1] turned into every setting it changes.

At D = 0 every knob is neutral (`Difficulty.from_level(0) == Difficulty()`) and generate.py draws no
extra random numbers, so the easy clips, the bundled sample_videos/ among them, stay byte-identical.
Above 0 each knob moves linearly with D (value at D = 1 in brackets):

  pixels        extra_noise      added to the per-pixel noise σ of 2                    8 D   [8]
                wiper_prob       chance a frame has a dark wiper band across the view   0.35 D [0.35]
                max_blobs        grey dirt blobs on the windscreen, 0..this per clip    4 D   [4]
  event_type    hazard_late      the red car first appears at a random frame in [0, hazard_late x
                                 the last frame], absent before: at D = 1 it is in no frame an
                                 8-frame sample shows in ~10% of incident clips         D     [1]
                hazard_fade      the red car's colour blended this far towards the orange of
                                 the other cars                                         0.6 D [0.6]
                flash_prob       chance a collision shows its impact flash              1-0.5 D [0.5]
  rule_violations sign_late      the same as hazard_late for the STOP and yield signs   0.5 D [0.5]
                sign_scale       size of the STOP and yield signs                       1-0.25 D [0.75]
                bar_squeeze      speedometer bar lengths move together: speeding 76-86 px
                                 -> 76-30 s .. 86-20 s, normal 20-34 -> 20+14 s .. 34+14 s  0.6 D [0.6]
  intended_driving_action
                curve_scale      how far turns bend the road                            1-0.6 D [0.4]
                nav_flicker      chance a frame's navigation icon is off                0.5 D [0.5]
  visibility    haze             good visibility: fog blend drawn in [0, haze]          0.3 D [0.3]
                fog_relief       bad, fog: blend 0.7 less a draw in [0, fog_relief]     0.45 D [0.45]
                night_lift       bad, night: brightness 0.2 plus a draw in [0, night_lift] 0.45 D [0.45]
  traffic_density low_extra      light traffic: 0 to 1 + low_extra cars, also nearer    D     [1]
                high_fewer       heavy traffic: 6 - high_fewer to 8 - high_fewer cars   2 D   [2]
                near_lanes_prob  heavy traffic fills both lanes beside the ego car      1-0.5 D [0.5]
  cues          cue_fade         the other colour cues (signs, flash, speed bar, navigation
                                 icon) blended this far towards grey                    0.35 D [0.35]
  labels        label_noise      chance per field that the *label* is replaced by another allowed
                                 value (the video shows the true one; the caption follows the
                                 final labels)                                          0.1 D [0.1]

The left column is the part (PARTS) whose level moves the knob.
Counts are rounded half up. "Hard" is D = 1 (README.md beside this file gives the accuracies a
fine-tune reached on it). Only numpy is used here; generate.py does the drawing.

One D moves every knob. A level per part (`parse_levels("event_type=1,visibility=1,...")`) moves
each group of knobs on its own, so that a set can be hard where a model learns fast and easy where
it learns slowly: the parts are the five labels' cues (the names in PARTS), `pixels`, `cues` (the
shared colour fade) and `labels` (label noise); a part left out is at 0. Both forms draw the same
random numbers in the same order, so a part list with every part at D gives the bytes of D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


# part of --difficulty -> the knobs its level moves (the labels' own cues, then what every label shares)
PARTS = {
    "event_type": ("hazard_late", "hazard_fade", "flash_prob"),
    "rule_violations": ("sign_late", "sign_scale", "bar_squeeze"),
    "intended_driving_action": ("curve_scale", "nav_flicker"),
    "visibility": ("haze", "fog_relief", "night_lift"),
    "traffic_density": ("low_extra", "high_fewer", "near_lanes_prob"),
    "pixels": ("extra_noise", "wiper_prob", "max_blobs"),
    "cues": ("cue_fade",),
    "labels": ("label_noise",),
}
# knob -> (its value at D = 0, its change per unit of D); an int neutral means a count, rounded half up
_KNOBS = {
    "extra_noise": (0.0, 8.0), "wiper_prob": (0.0, 0.35), "max_blobs": (0, 4),
    "hazard_late": (0.0, 1.0), "sign_late": (0.0, 0.5), "hazard_fade": (0.0, 0.6), "flash_prob": (1.0, -0.5),
    "cue_fade": (0.0, 0.35), "nav_flicker": (0.0, 0.5), "sign_scale": (1.0, -0.25), "curve_scale": (1.0, -0.6),
    "haze": (0.0, 0.3), "fog_relief": (0.0, 0.45), "night_lift": (0.0, 0.45),
    "low_extra": (0, 1), "high_fewer": (0, 2), "near_lanes_prob": (1.0, -0.5),
    "bar_squeeze": (0.0, 0.6), "label_noise": (0.0, 0.1),
}


def parse_levels(text: str) -> float | dict:
    """--difficulty's value: one level ("0.5") or a level per part ("event_type=1,pixels=0.5").
    Raises ValueError naming what is wrong: an unknown or repeated part, a level that is not a number
    in [0, 1]."""
    text = str(text).strip()
    if "=" not in text:
        try:
            level = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither a level (a number in [0, 1]) nor PART=LEVEL pairs; "
                             f"parts: {', '.join(PARTS)}") from None
        Difficulty.from_level(level)  # the range check
        return level
    levels = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        part, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not part:
            raise ValueError(f"{item!r}: write PART=LEVEL, e.g. visibility=0.5")
        if part in levels:
            raise ValueError(f"{part} is given twice")
        try:
            levels[part] = float(value)
        except ValueError:
            raise ValueError(f"{part}: {value!r} is not a number") from None
    Difficulty.from_level(levels)  # names and ranges
    return levels


@dataclass(frozen=True)
class Difficulty:
    """The knobs at one level; the defaults are the easy (D = 0) clips. See the module docstring."""

    level: float = 0.0  # the highest part's level: 0 only when every knob is neutral (`easy`)
    extra_noise: float = 0.0
    wiper_prob: float = 0.0
    max_blobs: int = 0
    hazard_late: float = 0.0
    sign_late: float = 0.0
    hazard_fade: float = 0.0
    flash_prob: float = 1.0
    cue_fade: float = 0.0
    nav_flicker: float = 0.0
    sign_scale: float = 1.0
    curve_scale: float = 1.0
    haze: float = 0.0
    fog_relief: float = 0.0
    night_lift: float = 0.0
    low_extra: int = 0
    high_fewer: int = 0
    near_lanes_prob: float = 1.0
    bar_squeeze: float = 0.0
    label_noise: float = 0.0

    @classmethod
    def from_level(cls, level: float | dict) -> Difficulty:
        """The knobs at one level D for every part, or at a level per part ({part: D}, see PARTS)."""
        levels = dict(level) if isinstance(level, dict) else {part: level for part in PARTS}
        unknown = set(levels) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown difficulty part(s) {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
        for part, d in levels.items():
            if not 0.0 <= float(d) <= 1.0:
                where = f" ({part})" if isinstance(level, dict) else ""
                raise ValueError(f"difficulty must be in [0, 1], not {d}{where}")
        if not any(float(d) for d in levels.values()):
            return cls()
        knobs = {}
        for part, names in PARTS.items():
            d = float(levels.get(part, 0.0))
            for name in names:
                neutral, slope = _KNOBS[name]
                value = neutral + slope * d  # e.g. 1.0 + -0.5 * d: the same float as the 1.0 - 0.5 * d of before
                knobs[name] = _round(value) if isinstance(neutral, int) else value
        return cls(level=max(float(d) for d in levels.values()), **knobs)

    @property
    def easy(self) -> bool:
        return self.level == 0.0

    def bar_range(self, speeding: bool, easy_range: tuple[int, int]) -> tuple[int, int]:
        """Speedometer bar length range (px): the easy one, squeezed towards the other kind's."""
        lo, hi = easy_range
        if speeding:
            return lo - _round(30 * self.bar_squeeze), hi - _round(20 * self.bar_squeeze)
        return lo + _round(14 * self.bar_squeeze), hi + _round(14 * self.bar_squeeze)


# --------------------------------------------------------------------------------------------------
# Per-clip random choices (drawn from a generator of their own, so the easy stream is untouched)
# --------------------------------------------------------------------------------------------------


@dataclass
class ClipExtras:
    """What a hard clip adds, drawn once per clip from its own generator."""

    hazard_start: int = 0  # first frame with the red car
    sign_start: int = 0  # first frame with the signs
    flash: bool = True  # collision shows the impact flash
    wiper: np.ndarray | None = None  # per frame: wiper angle in radians, NaN = no wiper
    nav_on: np.ndarray | None = None  # per frame: navigation icon shown
    blobs: tuple = ()  # (x, y, radius, grey level) of dirt blobs on the glass
    haze: float = 0.0  # good visibility: fog blend
    fog_relief: float = 0.0  # bad visibility, fog: taken off the fog blend
    night_lift: float = 0.0  # bad visibility, night: added to the brightness factor
    near_lanes: bool = True  # heavy traffic fills both lanes beside the ego car


def draw_extras(knobs: Difficulty, rng: np.random.Generator, n_frames: int,
                width: int, height: int) -> ClipExtras:
    if knobs.easy:
        return ClipExtras()
    last = n_frames - 1
    wiper_on = rng.random(n_frames) < knobs.wiper_prob
    blobs = tuple(
        (float(rng.uniform(0, width)), float(rng.uniform(0, height)), float(rng.uniform(4, 10)),
         float(rng.uniform(60, 140)))
        for _ in range(int(rng.integers(0, knobs.max_blobs + 1)))
    )
    return ClipExtras(
        hazard_start=int(rng.integers(0, int(knobs.hazard_late * last) + 1)),
        sign_start=int(rng.integers(0, int(knobs.sign_late * last) + 1)),
        flash=bool(rng.random() < knobs.flash_prob),
        wiper=np.where(wiper_on, rng.uniform(0.35, 2.8, n_frames), np.nan),
        nav_on=rng.random(n_frames) >= knobs.nav_flicker,
        blobs=blobs,
        haze=float(rng.uniform(0, knobs.haze)),
        fog_relief=float(rng.uniform(0, knobs.fog_relief)),
        night_lift=float(rng.uniform(0, knobs.night_lift)),
        near_lanes=bool(rng.random() < knobs.near_lanes_prob),
    )


def fade(colour, amount: float, towards=(128, 128, 128)) -> np.ndarray:
    """`colour` blended `amount` of the way towards a neutral colour."""
    c = np.asarray(colour, dtype=np.float32)
    return c + (np.asarray(towards, dtype=np.float32) - c) * amount


def occlude(img: np.ndarray, extras: ClipExtras, f: int, bottom: int) -> None:
    """Dirt blobs and (in some frames) a wiper band over the view above row `bottom`, in place."""
    height, width = img.shape[:2]
    ys, xs = np.mgrid[0:bottom, 0:width].astype(np.float32)
    view = img[:bottom].astype(np.float32)
    for x, y, r, grey in extras.blobs:
        alpha = np.clip(1.5 - np.hypot(xs - x, ys - y) / r, 0.0, 0.85)[..., None]  # soft edge
        view = view * (1 - alpha) + grey * alpha
    angle = extras.wiper[f] if extras.wiper is not None else np.nan
    if not np.isnan(angle):  # a band pivoting on the bottom edge, left of centre
        px, py = width * 0.3, float(bottom + 10)
        dist = np.abs((xs - px) * np.sin(angle) + (ys - py) * np.cos(angle))
        along = (xs - px) * np.cos(angle) - (ys - py) * np.sin(angle)
        band = (dist < 5.0) & (along > 0)
        view[band] = view[band] * 0.15 + 10
    img[:bottom] = np.clip(np.round(view), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Label noise
# --------------------------------------------------------------------------------------------------


def corrupt_labels(labels: dict, choices: dict[str, tuple], list_field: str, p: float,
                   rng: np.random.Generator) -> dict:
    """A copy of `labels` in which each field of `choices` is, with chance p, replaced by another
    allowed value: a different enum value, or (for `list_field`) one violation added or removed."""
    out = dict(labels)
    for name, values in choices.items():
        if rng.random() >= p:
            continue
        if name == list_field:
            flip = values[int(rng.integers(len(values)))]
            present = set(out[name]) ^ {flip}
            out[name] = [v for v in values if v in present]
        else:
            others = [v for v in values if v != out[name]]
            out[name] = others[int(rng.integers(len(others)))]
    return out
