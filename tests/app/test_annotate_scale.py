"""The Annotate tab on 20,000 clips through gradio_client: open, filter, search, Save & next."""

from __future__ import annotations

import json

import pytest

from core.data.store import AnnotationStore
from tests.data.test_store_index import big_dataset
from tests.support import LABEL


@pytest.mark.slow
def test_client_on_20000_clips_filters_opens_and_saves_next(tmp_path):
    from gradio_client import Client

    from app import build_app
    from core.workspace import Workspace

    root = big_dataset(tmp_path / "d", 20_000, labelled_every=2)
    demo = build_app(Workspace(dataset_dir=root, runs_dir=tmp_path / "runs"))
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        todo = client.predict("unlabelled", "", 0, api_name="/gallery")
        assert todo["matching"] == 10_000 and todo["pages"] == 84 and set(todo["statuses"]) == {"unlabelled"}
        assert "20000 clips" in todo["summary"]
        assert client.predict("all", "C012345", 0, api_name="/gallery")["clips"] == ["videos/c012345.mp4"]
        rel, saved = todo["clips"][0], []
        for _ in range(3):
            clip = client.predict(rel, api_name="/open_clip")
            assert clip["status"] == "unlabelled" and clip["revision"] == "new"
            label = dict(LABEL, caption=f"saved {rel}")
            out = client.predict(rel, json.dumps(label), clip["revision"], "val", "unlabelled", "",
                                 api_name="/save_next")
            assert out["message"] == f"saved {rel}"
            saved.append(rel)
            rel = out["next"]
        assert saved == todo["clips"][:3] and rel == todo["clips"][3]
        after = client.predict("unlabelled", "", 0, api_name="/gallery")
        assert after["matching"] == 9_997 and after["clips"][0] == rel
    finally:
        demo.close()
    rows = {r.video: r.data for r in AnnotationStore(root).rows()}
    assert len(rows) == 10_003
    assert all(rows[r]["caption"] == f"saved {r}" and rows[r]["split"] == "val" for r in saved)
