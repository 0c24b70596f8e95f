from .cli.convert import run

run()
