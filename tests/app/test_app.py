"""The app as a client sees it: launch on loopback, call the inference endpoint through gradio_client."""

import pytest

from tests.support import make_dataset


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    from app import build_app
    from core.workspace import Workspace

    root = make_dataset(tmp_path_factory.mktemp("app") / "ds", n=4)  # a copy: the app writes into its dataset
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path_factory.mktemp("runs"))
    demo = build_app(ws)
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_inference_endpoint_returns_frames_and_output(client):
    gallery, status, raw, parsed, message = client.predict("videos/clip_0000.mp4", "tiny:default", True,
                                                           api_name="/run_model")
    assert len(gallery) == 8  # the frames the model actually gets
    assert isinstance(raw, str) and message == ""
    assert "✔ schema-valid" in status and "decoding constrained to the schema" in status  # the tab's default


def test_show_clip_returns_label(client):
    video, label = client.predict("videos/clip_0001.mp4", api_name="/show_clip")
    assert label["event_type"] in ("collision", "near_miss", "no_incident")


def test_every_render_waits_for_the_others(tmp_path):
    """A page load starts the app's renders together, and two Gradio renders in parallel threads
    corrupt the session's block table (the Annotate form then never appeared: gradio#9991): every
    render is in one concurrency group of one."""
    from app import build_app
    from core.workspace import Workspace

    demo = build_app(Workspace(dataset_dir=make_dataset(tmp_path / "ds", n=2), runs_dir=tmp_path / "runs"))
    renders = [f for f in demo.fns.values() if f.renderable is not None]
    assert len(renders) >= 3  # the Annotate form, the Schema preview, the Export plots
    assert {(f.concurrency_id, f.concurrency_limit) for f in renders} == {("render", 1)}
