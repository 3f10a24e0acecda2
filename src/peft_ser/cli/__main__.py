"""``python -m peft_ser.cli``: the command line (as ``accelerate launch -m peft_ser.cli``)."""

from peft_ser.cli import app

app()
