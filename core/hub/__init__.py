"""Publishing to the Hugging Face Hub: a run as a model repository, a dataset as a VideoFolder one.

`publish_run` builds the repository folder (the adapter, or the merged model when the base is not
on the Hub, safetensors only, the preprocessing spec, the schema, the training config, the
evaluation and a model card written from all of them) and uploads it with huggingface_hub
(`create_repo`, one commit: core.hub.transfer, every wait bounded by VVW_HUB_TIMEOUT); `publish_dataset`
does the same for a dataset folder, leaving out clips that do not open as videos. With `dry_run=DIR`
both write exactly that folder and upload nothing. A damaged run is refused before anything else
(core.hub.checks); an interrupted push removes its upload copy (core.hub.staging). This package does not train, and
evaluates only through core.serve.report; it never reads a token from anywhere huggingface_hub
does not.
"""

from core.hub.card import dataset_card, model_card, schema_table
from core.hub.checks import check_run
from core.hub.publish import Published, dataset_folder, is_hub_id, model_folder, publish_dataset, publish_run
from core.hub.staging import PublishInterrupted
from core.hub.transfer import NO_TOKEN, TIMEOUT_ENV

__all__ = ["NO_TOKEN", "TIMEOUT_ENV", "PublishInterrupted", "Published", "check_run", "dataset_card", "dataset_folder",
           "is_hub_id", "model_card", "model_folder", "publish_dataset", "publish_run", "schema_table"]
