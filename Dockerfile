# Video VLM Workbench. CPU by default; for NVIDIA GPUs:
#   docker build --build-arg TORCH_VARIANT=cu128 -t vvw:gpu .   and   docker run --gpus all ...
# Run (the port is published on loopback only; add VVW_AUTH=user:pass before exposing it further):
#   docker build -t vvw . && docker run --rm --shm-size 2g -p 127.0.0.1:7860:7860 -v "$PWD/work:/work" vvw
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false VVW_DATA_DIR=/work/data \
    GRADIO_ANALYTICS_ENABLED=False VVW_CACHE_DIR=/work/.cache HF_HOME=/work/.hf
WORKDIR /app

# torch and torchvision first, from the wheel index of the chosen variant (the CPU wheels are ~10x smaller)
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" torch==2.14.1 torchvision==0.29.1
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home --uid 1000 app && mkdir -p /work && chown -R app /work /app
USER app

# Inside the container the server must listen on all interfaces for -p to reach it.
ENV GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860
EXPOSE 7860
CMD ["python", "app.py", "--runs", "/work/checkpoints"]
