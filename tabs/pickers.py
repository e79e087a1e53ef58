"""Run and model pickers that list the runs that exist now, in every tab.

A dropdown built with `ws.finished_runs()` at app start is frozen there: a run trained in the Train
tab never reached Compare, Evaluate or Publish, not even after a page reload (Gradio re-sends the
layout built once, not a new one). So every picker is made here and refreshed in one place: on page
load, and when the set of finished runs changes (one light timer lists the runs folder). A refresh
moves a picker to the newest finished run only when it showed the previous default (or nothing),
so a run the person picked on purpose stays picked.

Tabs call `Pickers.run`, `.model` or `.models` inside their layout; `app.py` calls `wire()` once
inside the Blocks, after every tab is built.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

RUNS_POLL_S = 3.0  # how soon a finished run appears in the pickers; listing the runs folder is cheap

RUN, MODEL, MODELS = "run", "model", "models"


class Pickers:
    def __init__(self, ws):
        self.ws = ws
        self._items: list[tuple[gr.Dropdown, str]] = []

    # --- what each kind lists and starts on ------------------------------------------------------

    def _runs(self) -> list[str]:
        return [str(p) for p in self.ws.finished_runs()]

    def choices(self, kind: str, runs: list[str] | None = None) -> list[tuple[str, str]]:
        runs = self._runs() if runs is None else runs
        options = [(Path(r).name, r) for r in runs]
        if kind != RUN:
            options.insert(0, (f"{self.ws.default_model} (untrained base)", self.ws.default_model))
        return options

    def default(self, kind: str, runs: list[str] | None = None):
        """The newest finished run (the base with it for MODELS; the base alone when no run finished)."""
        runs = self._runs() if runs is None else runs
        newest = runs[0] if runs else None
        if kind == RUN:
            return newest
        if kind == MODEL:
            return newest or self.ws.default_model
        return [self.ws.default_model] + ([newest] if newest else [])

    # --- components ------------------------------------------------------------------------------

    def _make(self, kind: str, **kwargs) -> gr.Dropdown:
        runs = self._runs()
        kwargs.setdefault("allow_custom_value", True)  # a run folder or hub id typed by hand
        dropdown = gr.Dropdown(self.choices(kind, runs), value=self.default(kind, runs),
                               multiselect=kind == MODELS, **kwargs)
        self._items.append((dropdown, kind))
        return dropdown

    def run(self, **kwargs) -> gr.Dropdown:
        """A finished run (Compare, Export a model, Publish)."""
        return self._make(RUN, **kwargs)

    def model(self, **kwargs) -> gr.Dropdown:
        """The base or a finished run (Inference, batch prediction, pre-label)."""
        return self._make(MODEL, **kwargs)

    def models(self, **kwargs) -> gr.Dropdown:
        """Several models at once (Evaluate), starting on base + newest run."""
        return self._make(MODELS, **kwargs)

    # --- refresh ---------------------------------------------------------------------------------

    def updates(self, previous: list[str] | None, values: list, runs: list[str] | None = None) -> list:
        """One update per picker for the finished runs `runs` (default: those on disk now). A picker
        still on the default for `previous` runs (or empty) moves to the new default; others keep
        their value."""
        runs = self._runs() if runs is None else runs
        out = []
        for (_, kind), value in zip(self._items, values):
            stale = previous is None or value in (None, "", []) or value == self.default(kind, previous)
            update = {"choices": self.choices(kind, runs)}
            if stale:
                update["value"] = self.default(kind, runs)
            out.append(gr.update(**update))
        return out

    def wire(self) -> None:
        """Page load and a change in the finished runs refresh every picker. Call inside the Blocks."""
        from gradio.context import get_blocks_context

        if not self._items:
            return
        demo = get_blocks_context().root_block
        seen = gr.State(None)  # the finished runs this page last listed
        comps = [c for c, _ in self._items]

        def on_load(*values):
            runs = self._runs()
            return [runs, *self.updates(None, list(values), runs)]

        def on_tick(previous, *values):
            runs = self._runs()
            if runs == previous:
                return [gr.skip()] * (1 + len(comps))
            return [runs, *self.updates(previous, list(values), runs)]

        demo.load(on_load, comps, [seen, *comps], show_progress="hidden")
        gr.Timer(RUNS_POLL_S).tick(on_tick, [seen, *comps], [seen, *comps], show_progress="hidden")
