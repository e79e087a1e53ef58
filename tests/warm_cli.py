"""A warm `cli.py` for the tests: one server process imports what the model commands import (torch,
transformers, peft, core) once, then forks a child per call. Each child is a process of its own that
runs `cli.main` with its own argv, working directory, environment, stdin (/dev/null), stdout and
stderr (files the caller reads) and exit status, as `python cli.py ...` would; what it skips is the
5-7 s of imports a fresh interpreter pays on this machine, once per CLI call of the suite.

Why forking is safe here: the server runs no torch operation before it forks, so no OpenMP pool
exists to be copied half-way. `import torch` starts one idle native thread, which a fork leaves
behind, as it does for the DataLoader workers torch forks itself; the server checks that nothing
it imports after torch starts another. What a fork cannot
give is a different import-time environment: huggingface_hub, torch and core read some variables
once, at import (HF_HUB_OFFLINE, HF_ENDPOINT, OMP_NUM_THREADS, ...). A call whose environment differs
from the server's in any such variable runs in a fresh interpreter instead (`run_cli` decides).

    python tests/warm_cli.py      # the server: JSON requests on stdin, JSON answers on stdout
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import traceback

# variables some import reads once; a call that changes one of them needs a fresh interpreter
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "OMP_", "MKL_", "KMP_",
                        "VVW_", "TOKENIZERS_", "XDG_", "RAY_", "CUDA_", "GRADIO_", "PYTHON")
PRELOAD = ("torch", "transformers", "peft", "core.models.loading", "core.serve.batch", "core.serve.predictor",
           "core.train.prepare", "commands.train", "commands.serve", "commands.data", "commands.hub")


def import_time_env(env) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def _preload() -> None:
    import importlib

    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor  # noqa: F401 (lazy modules)

    for name in PRELOAD:
        importlib.import_module(name)


def _child(request: dict, answers_fd: int, added: dict) -> None:
    """In the forked child: become `python cli.py ARGV` and exit with its status (never returns)."""
    import signal

    os.close(answers_fd)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_TRUNC)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin, sys.stdout, sys.stderr = (open(0, closefd=False), open(1, "w", closefd=False),
                                         open(2, "w", closefd=False))
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({**added, **request["env"]})  # what cli.py's own import would have set, then the caller's
    import cli

    sys.argv = [cli.__file__, *request["argv"]]
    code = 1
    try:
        code = cli.main(request["argv"])
    except SystemExit as exc:  # argparse's usage errors; a string is printed, as the interpreter would
        code = exc.code if isinstance(exc.code, int) or exc.code is None else print(exc.code, file=sys.stderr) or 1
    except BaseException:
        traceback.print_exc()  # an uncaught exception: its traceback and status 1
    finally:
        # the interpreter's own exit, less tearing down every module (1.6 s with torch loaded)
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


def serve() -> None:
    before = dict(os.environ)
    sys.path.insert(0, os.getcwd())
    import torch  # noqa: F401

    torch_threads = len(os.listdir("/proc/self/task"))
    import cli  # noqa: F401 (sets its environment defaults)

    _preload()
    added = {k: v for k, v in os.environ.items() if k not in before}
    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != torch_threads:
        raise SystemExit(f"warm_cli: {len(os.listdir('/proc/self/task'))} threads after the imports "
                         f"({torch_threads} after torch's); a fork would copy the others half-way")
    answers_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print of the server's must not land among the answers
    answers = os.fdopen(answers_fd, "w", buffering=1)
    answers.write(json.dumps({"env": import_time_env(before)}) + "\n")  # what it was started with
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, answers_fd, added)
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    serve()
