"""The CLI's subcommands, one module per area: `train` (train, estimate, merge), `serve` (eval,
calibrate, models, predict), `api` (serve: the OpenAI-compatible API), `data` (inspect-video,
add-clips, import, export-dataset, split, validate, prelabel, review) and `hub` (push, push-dataset).

Each module has `register(subparsers)`, which adds its subcommands with a help text on every flag,
and one `cmd_*` function per subcommand: parse the arguments, make one core call, print the result.
No logic lives here that the app's tabs would need: a tab and its CLI twin call the same core
function. Modules import core lazily inside the commands, so `cli.py --help` and a refused config
load no ML library. cli.py builds the parser and turns core's typed errors into one line.
"""
