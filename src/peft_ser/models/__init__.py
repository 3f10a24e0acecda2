"""The model: backbones (`backbones/`), PEFT methods (`tuning/`), the head, the tasks a head
predicts (`tasks`), the checks on a model's inputs (`inputs`) and `SERModel` with its on-disk
format (`ser_model`)."""
