"""Publishing to the Hugging Face Hub: a run as a model repository, a dataset as a VideoFolder one.

`publish_run` builds the repository folder (the adapter, or the merged model when the base is not
on the Hub, safetensors only, the preprocessing spec, the schema, the training config, the
evaluation and a model card written from all of them) and uploads it with huggingface_hub
(`create_repo`, `upload_folder`); `publish_dataset` does the same for a dataset folder. With
`dry_run=DIR` both write exactly that folder and upload nothing. This package does not train, and
evaluates only through core.serve.report; it never reads a token from anywhere huggingface_hub
does not.
"""

from core.hub.card import dataset_card, model_card, schema_table
from core.hub.publish import NO_TOKEN, Published, dataset_folder, is_hub_id, model_folder, publish_dataset, publish_run

__all__ = ["NO_TOKEN", "Published", "dataset_card", "dataset_folder", "is_hub_id", "model_card", "model_folder",
           "publish_dataset", "publish_run", "schema_table"]
