"""Video VLM Workbench core: all logic, no UI. Never imports gradio."""
