"""Built-in schemas: starting points in the Schema tab and the tiny model's tokenizer corpus."""

from __future__ import annotations

# Identical to sample_videos/schema.json (a test keeps them in sync): the tiny tokenizer is trained on
# it, so the bundled demo prompt tokenises into whole words.
DASHCAM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Dashcam clip labels",
    "type": "object",
    "properties": {
        "caption": {
            "type": "string",
            "description": "One-sentence description of the clip."
        },
        "event_type": {
            "type": "string",
            "enum": [
                "collision",
                "near_miss",
                "no_incident"
            ],
            "description": "Most serious safety event in the clip."
        },
        "rule_violations": {
            "type": "array",
            "items": {
                "type": "string",
                "enum": [
                    "speeding",
                    "failure_to_yield",
                    "ignoring_traffic_signs"
                ]
            },
            "uniqueItems": True,
            "description": "Traffic rules the ego driver breaks (may be empty)."
        },
        "intended_driving_action": {
            "type": "string",
            "enum": [
                "turn_left",
                "turn_right",
                "change_lanes"
            ],
            "description": "Manoeuvre the ego driver is making."
        },
        "traffic_density": {
            "type": "string",
            "enum": [
                "low",
                "high"
            ],
            "description": "Amount of other traffic on the road."
        },
        "visibility": {
            "type": "string",
            "enum": [
                "good",
                "bad"
            ],
            "description": "Good in clear daylight; bad in fog or at night."
        }
    },
    "required": [
        "caption",
        "event_type",
        "rule_violations",
        "intended_driving_action",
        "traffic_density",
        "visibility"
    ],
    "additionalProperties": False
}

EXERCISE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Exercise form",
    "type": "object",
    "properties": {
        "labels": {"type": "array", "items": {"type": "string"}, "description": "short form-feedback labels"},
        "labels_descriptive": {"type": "string", "description": "the feedback in one or two sentences"},
    },
    "required": ["labels", "labels_descriptive"],
}

SUMMARY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Video summary",
    "type": "object",
    "properties": {"summary": {"type": "string", "description": "what happens in the video"}},
    "required": ["summary"],
}

PRESETS = {"dashcam": DASHCAM_SCHEMA, "exercise": EXERCISE_SCHEMA, "summary": SUMMARY_SCHEMA}

# Words a driving caption is made of; they give the tiny tokenizer whole-word tokens so answers
# stay short. Anything else still tokenises (byte-level BPE), just into more pieces.
CAPTION_WORDS = (
    "A An The the a an and but with in on of to at while as is are was were it its driver drives driving "
    "car cars vehicle vehicles truck road lane lanes traffic light heavy dense sparse few many empty busy "
    "clear sunny daytime day night dark foggy fog bad good poor visibility weather drive "
    "turns turning turn left right changes change changing lanes ahead behind front side "
    "red stop sign yield speed speeding limit fast too passes passing without stopping ignores ignoring "
    "fails failing to yield gives way crash crashes collides collision into hits near miss narrowly "
    "avoids avoiding misses brakes braking hard suddenly cuts in no incident nothing happens safely "
    "uneventful calm normal other breaks rule rules violation violations sign signs "
    "Clear Low-visibility avoided broken hit occurs speeds".split()
)
