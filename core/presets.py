"""Built-in schemas: starting points in the Schema tab and the tiny model's tokenizer corpus."""

from __future__ import annotations

DASHCAM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Dashcam clip",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "caption": {"type": "string", "description": "one-sentence description of the clip"},
        "event_type": {"enum": ["collision", "near_miss", "no_incident"], "description": "what happened"},
        "rule_violations": {
            "type": "array",
            "uniqueItems": True,
            "items": {"enum": ["speeding", "failure_to_yield", "ignoring_traffic_signs"]},
            "description": "traffic rules the driver broke",
        },
        "intended_driving_action": {"enum": ["turn_left", "turn_right", "change_lanes"], "description": "what the driver is doing"},
        "traffic_density": {"enum": ["low", "high"], "description": "how many other vehicles"},
        "visibility": {"enum": ["good", "bad"], "description": "fog or night is bad"},
    },
    "required": ["caption", "event_type", "rule_violations", "intended_driving_action", "traffic_density", "visibility"],
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
    "uneventful calm normal other breaks rule rules violation violations sign signs".split()
)
